"""A quiet series' views are taken from its last minute when they merge the same blobs
(`ShardWindows.view_keys`): the evaluations are exactly those of views merged afresh every
minute, fewer views are merged, and a snapshot of the evaluator leaves the memo out."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from metrics.bucket import Bucket
from metrics.series import SeriesKey
from metrics.shard import ShardWindows, View
from rules.evaluate import RuleEvaluator
from rules.load import parse_rules
from rules.records import Evaluation
from tests.fakes.shard_run import ShardRun
from tests.fakes.traffic import (
    HOUR_NS,
    MINUTE_NS,
    START_NS,
    Injection,
    TrafficGenerator,
)

START = START_NS + 3 * HOUR_NS  # night: little traffic, many quiet minutes
MINUTES = 80
RULES = ("error-rate-high", "latency-p99-critical", "latency-p99-high", "ttft-p99-target",
         "cache-hit-rate-low", "negative-feedback-high", "input-tokens-outlier")


def _run(*, snapshot_at: int | None = None) -> tuple[list[Evaluation], int]:
    """Evaluations of a few shipped rules over sparse traffic, and the views merged. With
    `snapshot_at`, the evaluator goes through pickle at that minute (as recovery does)."""
    text = Path(__file__).resolve().parents[2].joinpath("alerts.toml").read_text()
    config = parse_rules(text)
    config = config.model_copy(update={"rules": tuple(r for r in config.rules
                                                      if r.name in RULES)})
    run = ShardRun(config)
    traffic = TrafficGenerator(seed=11, injections=(
        Injection(START, START + MINUTES * MINUTE_NS, changes={"rate_factor": 0.05}),))
    out: list[Evaluation] = []
    merged = 0
    views_parts = ShardWindows.views_parts

    def counting(self: ShardWindows, key: SeriesKey, wanted: list[View]) -> list[Bucket | None]:
        nonlocal merged
        merged += len(wanted)
        return views_parts(self, key, wanted)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ShardWindows, "views_parts", counting)
        for index, (minute, records) in enumerate(
                traffic.minutes(START, START + MINUTES * MINUTE_NS)):
            if index == snapshot_at:
                run.evaluator = pickle.loads(pickle.dumps(run.evaluator))  # noqa: S301 - ours
            out.extend(run.minute(minute, records))
    return out, merged


def test_quiet_series_reuse_views_with_the_same_evaluations(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reused, merged_reusing = _run()
    restored, _ = _run(snapshot_at=MINUTES // 2)
    with monkeypatch.context() as patch:  # no view keys: every view merged every minute
        patch.setattr(ShardWindows, "view_keys", lambda self, key, wanted: None)
        fresh, merged_fresh = _run()
    assert len(fresh) > 1000
    assert reused == fresh
    assert restored == fresh
    assert merged_reusing < 0.8 * merged_fresh


def test_an_evaluator_snapshot_holds_no_views() -> None:
    text = Path(__file__).resolve().parents[2].joinpath("alerts.toml").read_text()
    evaluator = RuleEvaluator(parse_rules(text))
    empty = pickle.dumps(evaluator)
    evaluator._memos[(("service", "x"),)] = {((), frozenset()): Bucket()}
    assert pickle.dumps(evaluator) == empty
    assert pickle.loads(empty)._memos == {}  # noqa: S301 - our own bytes
