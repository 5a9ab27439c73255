"""A window shard holding no alert instance does not hand evaluations that are no breach to
`AlertLifecycle.observe` (they would change nothing there): its events, ticks and lifecycle
are those of observing every evaluation, through an incident that opens and resolves alerts."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from flows.steps import Batch, Progress, WatermarkPolicy, WindowLogic, WindowState, new_watermark
from metrics.shard import ShardWindows
from rules.evaluate import RuleEvaluator
from rules.families import families
from rules.lifecycle import AlertLifecycle, LifecyclePolicy
from rules.load import parse_rules
from rules.records import AlertEvent, Evaluation
from tests.fakes.traffic import (
    MAX_SPILL_NS,
    MINUTE_NS,
    START_NS,
    Injection,
    TrafficGenerator,
)

ALERTS = Path(__file__).resolve().parents[2] / "alerts.toml"
RULES = ("error-rate-high", "provider-error-rate-high", "request-quota-80pct")
START = START_NS + 10 * 3_600_000_000_000  # daytime: enough requests for min_samples
MINUTES = 45


class _Counting(AlertLifecycle):
    """Counts the evaluations it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.observed = 0

    def observe(self, evaluation: Evaluation, policy: LifecyclePolicy) -> list[AlertEvent]:
        self.observed += 1
        return super().observe(evaluation, policy)


class _NeverEmpty(_Counting):
    """Never looks empty to the window step, which so hands it every evaluation."""

    def __len__(self) -> int:
        return super().__len__() + 1


def _run(lifecycle: _Counting) -> tuple[list[object], _Counting]:
    config = parse_rules(ALERTS.read_text())
    config = config.model_copy(update={"rules": tuple(r for r in config.rules
                                                      if r.name in RULES)})
    policy = WatermarkPolicy(("p",), idle_timeout=timedelta(hours=1),
                             allowed_lateness=timedelta(0))
    state = WindowState(ShardWindows(), new_watermark(policy, timedelta(0)),
                        RuleEvaluator(config), lifecycle, shard="w0")
    logic = WindowLogic(state, lambda: config)
    keys_of = [family.key_of for family in families(config)]
    traffic = TrafficGenerator(seed=5, injections=(Injection(
        START + 12 * MINUTE_NS, START + 24 * MINUTE_NS, provider="openai",
        model_changes={"error_share": 0.5}),))
    wall = time.time_ns()
    out: list[object] = []
    for minute, records in traffic.minutes(START, START + MINUTES * MINUTE_NS):
        for record in records:
            for key_of in keys_of:
                key = key_of(record)
                if key is not None:
                    state.windows.add(key, record)
        progress = Progress("p", minute - MAX_SPILL_NS, wall)
        out.extend(logic.on_batch([Batch("w0", (), (progress,))])[0])
    out.extend(logic.on_eof()[0])
    return out, lifecycle


def test_skipped_evaluations_change_nothing() -> None:
    skipping, lifecycle = _run(_Counting())
    observing, reference = _run(_NeverEmpty())
    events = [item for item in observing if isinstance(item, AlertEvent)]
    # The incident opens and resolves alerts (so the shard both held instances and none).
    assert {event.state for event in events} >= {"firing", "resolved"}
    assert skipping == observing
    assert lifecycle.snapshot() == reference.snapshot()
    assert 0 < lifecycle.observed < reference.observed


def test_an_empty_lifecycle_ignores_evaluations_that_are_no_breach() -> None:
    """What the skip relies on: `observe` of such an evaluation on an empty lifecycle."""
    policy = LifecyclePolicy(for_=timedelta(0), keep_firing_for=timedelta(0),
                             repeat_interval=timedelta(0), resolve_timeout=timedelta(minutes=15))
    plain = Evaluation(rule="r", tier=1, labels=(("service", "a"),), at_unix_ns=MINUTE_NS,
                       window_s=60.0, is_breach=False, value=0.5, threshold=1.0, samples=80)
    for evaluation in (plain, replace(plain, value=None, samples=0),
                       replace(plain, is_gated=True, samples=1)):
        lifecycle = AlertLifecycle()
        assert lifecycle.observe(evaluation, policy) == []
        assert len(lifecycle) == 0
        assert lifecycle.snapshot() == AlertLifecycle().snapshot()
    breach = AlertLifecycle()
    assert breach.observe(replace(plain, is_breach=True, value=2.0), policy)
    assert len(breach) == 1
