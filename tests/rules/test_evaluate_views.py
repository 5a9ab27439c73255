"""Rule evaluation reads partial views (`ShardWindows.views_parts`: counters, exemplars,
versions and what each metric reads); it must give exactly the evaluations full views give."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from metrics.bucket import Bucket
from metrics.series import SeriesKey
from metrics.shard import ShardWindows, View
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

EXTRA = '''
[[rules]]
name = "x-speed-rebaselined"
tier = 3
runbook = "https://runbooks.example/x-speed-rebaselined"
metric = "output_tokens_per_s"
group_by = ["service", "model"]
over = "5m"
min_samples = 1
detector = { kind = "drift", baseline = "1h", recent = "15m", drop = 0.2, direction = "down" }
rebaseline_on = ["prompt_template_version", "app_version"]

[[rules]]
name = "x-errors-or-silence"
tier = 3
runbook = "https://runbooks.example/x-errors-or-silence"
metric = "error_rate"
group_by = ["service", "endpoint"]
over = "5m"
when = "> 2%"
on_missing_data = "alert"

[[rules]]
name = "x-timeouts"
tier = 3
runbook = "https://runbooks.example/x-timeouts"
metric = "error_rate_server_error"
group_by = ["service"]
over = "15m"
when = "> 1%"
'''
START = START_NS + 13 * HOUR_NS  # afternoon traffic
CHANGE = START + 70 * MINUTE_NS


def _traffic() -> TrafficGenerator:
    support = "support-bot"
    return TrafficGenerator(seed=3, injections=(
        # an incident on one model, then a release with a new prompt version
        Injection(START + 40 * MINUTE_NS, START + 55 * MINUTE_NS, service=support,
                  provider="openai", model_changes={"error_share": 0.3}),
        Injection(CHANGE, START + 200 * MINUTE_NS, service=support,
                  changes={"app_version": "2.4.0"},
                  model_changes={"decode_speed_factor": 0.5}),
        # the other service goes silent for a while
        Injection(START + 75 * MINUTE_NS, START + 120 * MINUTE_NS, service="search-assistant",
                  changes={"rate_factor": 0.0}),
    ))


def _evaluate(minutes: int) -> list[Evaluation]:
    text = Path(__file__).resolve().parents[2].joinpath("alerts.toml").read_text()
    run = ShardRun(parse_rules(text + EXTRA))
    traffic = _traffic().minutes(START, START + minutes * MINUTE_NS)
    return [evaluation for minute, records in traffic
            for evaluation in run.minute(minute, records)]


def _full_views(self: ShardWindows, key: SeriesKey, wanted: list[View]) -> list[Bucket | None]:
    return [self.view(key, over, end) for over, end, _ in wanted]


def _full_view(self: ShardWindows, key: SeriesKey, over: timedelta, end: int,
               parts: frozenset[str]) -> Bucket | None:
    return self.view(key, over, end)


def test_partial_views_give_the_evaluations_of_full_views(
        monkeypatch: pytest.MonkeyPatch) -> None:
    partial = _evaluate(120)
    with monkeypatch.context() as patch:
        patch.setattr(ShardWindows, "views_parts", _full_views)
        patch.setattr(ShardWindows, "view_parts", _full_view)
        full = _evaluate(120)
    assert partial == full
    # The run went through what differs between the two: breaches with exemplars and
    # versions, version changes near a breach, windows without data, gated windows.
    assert any(e.is_breach and e.exemplar_trace_ids for e in partial)
    assert any(e.changed for e in partial)
    assert any(e.detail == "no data in the window" for e in partial)
    assert any(e.is_gated for e in partial)
    assert any(e.rule == "x-speed-rebaselined" and e.value is not None for e in partial)
