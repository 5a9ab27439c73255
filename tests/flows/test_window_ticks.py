"""Window shards tell routing about event time whenever their watermark moves, so a group's
`group_wait` runs on time instead of waiting for the next minute to close."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

from flows.steps import (
    Batch,
    Progress,
    Tick,
    WatermarkPolicy,
    WindowLogic,
    WindowState,
    new_watermark,
)
from metrics.bucket import MINUTE_NS
from metrics.shard import ShardWindows
from rules.evaluate import RuleEvaluator
from rules.lifecycle import AlertLifecycle
from tests.flows.cluster_flow import exact_rules

SECOND_NS = 1_000_000_000
T0 = 1_700_000_040 * SECOND_NS - (1_700_000_040 * SECOND_NS) % MINUTE_NS


def _ticks(out: tuple[Iterable[object], bool]) -> list[int]:
    return [item.now_unix_ns for item in out[0] if isinstance(item, Tick)]


def test_a_tick_follows_every_watermark_move_within_a_minute_and_only_then() -> None:
    rules = exact_rules()
    policy = WatermarkPolicy(("p",), idle_timeout=timedelta(minutes=5),
                             allowed_lateness=timedelta(0))
    state = WindowState(ShardWindows(), new_watermark(policy, timedelta(0)),
                        RuleEvaluator(rules), AlertLifecycle())
    logic = WindowLogic(state, lambda: rules)
    wall = time.time_ns()

    def progress(at: int) -> list[int]:
        return _ticks(logic.on_batch([Batch("w0", (), (Progress("p", at, wall),))]))

    assert progress(T0 + 10 * SECOND_NS) == [T0 + 10 * SECOND_NS]
    # Same minute, no minute closes: routing still hears that event time moved.
    assert progress(T0 + 25 * SECOND_NS) == [T0 + 25 * SECOND_NS]
    assert progress(T0 + 40 * SECOND_NS) == [T0 + 40 * SECOND_NS]
    # No move, no tick.
    assert progress(T0 + 40 * SECOND_NS) == []
    # The next minute: routing hears the new watermark (a shard without series closes no
    # minute, so there is no per-minute tick before it).
    assert progress(T0 + 70 * SECOND_NS) == [T0 + 70 * SECOND_NS]
    assert state.windows.closed_until_unix_ns == T0 + MINUTE_NS
