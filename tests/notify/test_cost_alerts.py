"""Cost alerts carry the attribution of the change: from the per-model usage the windows keep,
through the flow's window step (rule evaluation on breach), to the rendered notification."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.pricing import PriceTable
from ingest.span import LLMSpan, TraceContext
from metrics.bucket import MINUTE_NS, Bucket
from metrics.cost_mix import (
    MIX_LIMIT,
    OTHER_MODELS,
    CostMix,
    CostWindows,
    ModelCost,
    compare_windows,
)
from metrics.windows import SeriesWindows
from notify.attribution import Factor, attribution_of
from notify.config import NotifySettings
from notify.records import notification_from_json
from notify.render import build_notification, plain_text
from notify.runtime import NotifyRuntime
from rules.grouping import AlertGroup
from rules.load import parse_rules
from spanwatch.delivery import GroupNotifier
from tests.fakes.rule_harness import RuleHarness

PRICES = PriceTable.load()
T0 = datetime(2024, 5, 6, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000
_ids = itertools.count(1)

CONFIG = """
[receivers.slack]
kind = "slack"
[tiers.2]
receivers = ["slack"]
[[rules]]
name = "cost-per-request-spike"
tier = 2
metric = "cost_per_request"
group_by = ["service", "endpoint"]
over = "5m"
detector = { kind = "ratio", baseline = "1h", factor = 2.0 }
runbook = "Compare token counts and model mix with the baseline."
"""


def span(minute: int, model: str, *, input_tokens: int = 1000, output_tokens: int = 200,
         cached: int = 0, second: int = 10) -> LLMSpan:
    """A priced chat call ending `second`s into `minute` (minutes since T0)."""
    price = PRICES.price_of(model)
    assert price is not None
    end = T0_NS + minute * MINUTE_NS + second * 1_000_000_000
    n = next(_ids)
    return LLMSpan(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", parent_span_id="0" * 16, kind="llm",
        name="chat", start_unix_ns=end - 2_000_000_000, end_unix_ns=end,
        context=TraceContext(service="support", endpoint="/chat"), request_model=model,
        input_tokens=input_tokens, output_tokens=output_tokens, cached_input_tokens=cached,
        cost_usd=price.cost_usd(input_tokens, output_tokens, cached), cost_source="pricing")


def shares(windows: list[CostWindows]) -> dict[Factor, float]:
    attribution = attribution_of(windows, PRICES)
    assert attribution is not None
    total = sum(s.change_usd for s in attribution.shares)
    assert total == pytest.approx(attribution.change_usd, rel=1e-9)
    return {s.factor: s.share_ratio or 0.0 for s in attribution.shares}


def test_the_cost_mix_merges_the_same_in_any_order_and_pools_past_the_limit() -> None:
    rows = [(f"model-{i:02d}", 1, 100 * i, i, 10 * i, 1000 * i) for i in range(MIX_LIMIT + 4)]
    forward, backward, halves = CostMix(), CostMix(), CostMix()
    forward.merge(rows)
    backward.merge(reversed(rows))
    first, second = CostMix(), CostMix()
    first.merge(rows[1::2])
    second.merge(rows[::2])
    halves.merge(first.rows)
    halves.merge(second.rows)
    assert forward.rows == backward.rows == halves.rows
    named = [row[0] for row in forward.rows if row[0] != OTHER_MODELS]
    assert named == [f"model-{i:02d}" for i in range(MIX_LIMIT)]
    (pooled,) = [row for row in forward.rows if row[0] == OTHER_MODELS]
    assert pooled[1:] == (4, sum(100 * i for i in range(MIX_LIMIT, MIX_LIMIT + 4)),
                          sum(range(MIX_LIMIT, MIX_LIMIT + 4)),
                          sum(10 * i for i in range(MIX_LIMIT, MIX_LIMIT + 4)),
                          sum(1000 * i for i in range(MIX_LIMIT, MIX_LIMIT + 4)))
    assert sum(r[5] for r in forward.rows) == sum(r[5] for r in rows)  # totals stay exact


def test_a_bucket_keeps_priced_calls_per_model_through_its_state() -> None:
    bucket = Bucket()
    for record in (span(0, "gpt-4o", cached=400), span(0, "gpt-4o"), span(0, "gpt-4o-mini")):
        bucket.fold(record)
    assert [(m, calls, inp, cached, out) for m, calls, inp, cached, out, _ in
            bucket.cost_mix.rows] == [("gpt-4o", 2, 2000, 400, 400),
                                      ("gpt-4o-mini", 1, 1000, 0, 200)]
    assert sum(row[5] for row in bucket.cost_mix.rows) == bucket.cost_sum_pusd
    assert Bucket.from_state(bucket.to_state()).cost_mix.rows == bucket.cost_mix.rows


def test_a_one_day_baseline_is_scaled_to_the_window() -> None:
    """The series lives 26 hours with one call a minute, then three a minute: the day before
    the window, read from hourly rollups, scales to the window's 15 minutes."""
    series = SeriesWindows((("service", "support"),))
    for minute in range(26 * 60):
        series.add(span(minute, "gpt-4o"))
    for minute in range(26 * 60, 26 * 60 + 15):
        for second in (5, 25, 45):
            series.add(span(minute, "gpt-4o", second=second))
    end = T0_NS + (26 * 60 + 15) * MINUTE_NS
    series.close_until(end)
    windows = compare_windows(series, timedelta(minutes=15), timedelta(days=1), end)
    assert windows is not None
    assert windows.current_s == 15 * 60
    assert 23 * 3600 <= windows.baseline_s <= 24 * 3600  # whole hours of the hourly ring
    (now,), (before,) = windows.current, windows.baseline
    assert now.calls == 45
    assert before.calls == pytest.approx(15.0)  # one a minute, scaled to 15 minutes
    assert shares([windows])["request_volume"] == pytest.approx(1.0)


def test_a_young_series_is_compared_over_the_time_it_existed() -> None:
    series = SeriesWindows((("service", "support"),))
    start = 20 * 60  # the series appears 20 h after T0 and the baseline asks for a day
    for minute in range(start, start + 75):
        series.add(span(minute, "gpt-4o"))
    end = T0_NS + (start + 75) * MINUTE_NS
    series.close_until(end)
    windows = compare_windows(series, timedelta(minutes=15), timedelta(days=1), end)
    assert windows is not None
    assert windows.baseline_s == 60 * 60
    assert windows.baseline[0].calls == pytest.approx(15.0)
    assert shares([windows])["request_volume"] == pytest.approx(0.0, abs=1e-9)


def run_incident(normal: list[str], incident: list[tuple[str, int, int, int]]) -> RuleHarness:
    """Two hours of `normal` models (1000 in / 200 out tokens each, a call each minute per
    entry), then 20 minutes of `incident` calls (model, input, output, cached) a minute."""
    harness = RuleHarness(parse_rules(CONFIG))
    for minute in range(120):
        harness.add(span(minute, m, second=5 + 5 * i) for i, m in enumerate(normal))
    for minute in range(120, 140):
        harness.add(span(minute, m, input_tokens=inp, output_tokens=out, cached=cached,
                         second=5 + 5 * i) for i, (m, inp, out, cached) in enumerate(incident))
    harness.run_until(T0_NS + 140 * MINUTE_NS)
    return harness


def test_a_model_switch_is_attributed_to_the_model_mix_in_the_notification() -> None:
    harness = run_incident(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o"],
                           [("gpt-4o", 1000, 200, 0)] * 4)
    (fired,) = harness.fired("cost-per-request-spike")
    cost = fired.evaluation.cost
    assert cost is not None
    assert [m.model for m in cost.baseline] == ["gpt-4o", "gpt-4o-mini"]
    assert [(m.model, m.calls) for m in cost.current] == [("gpt-4o", 20)]
    assert cost.baseline_scale == pytest.approx(5 / 60)
    split = shares([cost])
    assert split["model_mix"] > 0.95
    assert abs(split["request_volume"]) < 0.01
    assert abs(split["tokens_per_request"]) < 0.01
    n = build_notification([fired], receiver="slack", kind="trigger", metric="cost_per_request",
                           prices=PRICES)
    assert n.attribution == attribution_of([cost], PRICES)
    assert n.attribution is not None
    text = plain_text(n)
    assert "model mix: +$" in text and "LMDI-I additive" in text
    resolved = build_notification([fired], receiver="slack", kind="resolve", prices=PRICES)
    assert resolved.attribution is None


def test_longer_prompts_are_attributed_to_tokens_per_request() -> None:
    harness = run_incident(["gpt-4o"] * 4, [("gpt-4o", 3000, 600, 0)] * 4)
    (fired,) = harness.fired("cost-per-request-spike")
    assert fired.evaluation.cost is not None
    split = shares([fired.evaluation.cost])
    assert split["tokens_per_request"] > 0.95
    assert abs(split["model_mix"]) < 1e-9


def test_a_shift_to_output_tokens_is_attributed_to_the_token_mix() -> None:
    # Same tokens per request, but output (4x the input price for gpt-4o) replaces input.
    harness = run_incident(["gpt-4o"] * 4, [("gpt-4o", 200, 1000, 0)] * 4)
    (fired,) = harness.fired("cost-per-request-spike")
    assert fired.evaluation.cost is not None
    split = shares([fired.evaluation.cost])
    assert split["token_mix"] > 0.95
    assert abs(split["price"]) < 1e-6


def test_explicit_costs_that_rise_are_attributed_to_price() -> None:
    """Costs reported by the spans (not the table) tripled at the same tokens."""
    base = ModelCost("gpt-4o", 100, 100_000, 0, 20_000, 0.45)
    now = ModelCost("gpt-4o", 100, 100_000, 0, 20_000, 1.35)
    split = shares([CostWindows((now,), (base,), 300, 300, 1.0)])
    assert split["price"] == pytest.approx(1.0)
    # A model the table does not know gets one blended price; its volume still counts.
    unknown = ModelCost("in-house-llm", 10, 5000, 0, 500, 0.02)
    split = shares([CostWindows((unknown, now), (unknown, base), 300, 300, 1.0)])
    assert split["price"] == pytest.approx(1.0)


def test_evaluations_that_do_not_breach_carry_no_usage() -> None:
    harness = run_incident(["gpt-4o"] * 4, [("gpt-4o", 3000, 600, 0)] * 4)
    harness.trace = {"cost-per-request-spike"}
    harness.run_until(T0_NS + 150 * MINUTE_NS)  # the alert clears: evaluations with no cost
    traced = harness.traced("cost-per-request-spike")
    assert traced and all(e.cost is None for e in traced if not e.is_breach)


def test_the_flows_group_sink_delivers_the_attribution(tmp_path: Path) -> None:
    """From the window step's alert to the file receiver, through the production group sink
    (`GroupNotifier`) and the runtime's price table."""
    harness = run_incident(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o"],
                           [("gpt-4o", 1000, 200, 0)] * 4)
    (fired,) = harness.fired("cost-per-request-spike")
    rules = parse_rules(CONFIG.replace('kind = "slack"', f'kind = "file"\npath = '
                                       f'"{tmp_path / "alerts.jsonl"}"'))
    runtime = NotifyRuntime.build(rules.receivers, NotifySettings(
        outbox_path=tmp_path / "outbox.sqlite3", digest_path=tmp_path / "digest.sqlite3",
        digest_dir=tmp_path / "digests"))
    try:
        GroupNotifier(runtime, rules).write([AlertGroup(
            key="cost", rule=fired.rule, tier=2, labels=fired.labels, firing=(fired,),
            resolved=(), new=(fired.fingerprint,), at_unix_ns=fired.at_unix_ns,
            first_at_unix_ns=fired.at_unix_ns, is_update=False, is_repeat=False)])
        assert runtime.service.workers["slack"].drain(timeout_s=10) == 0
    finally:
        runtime.stop()
    (line,) = (tmp_path / "alerts.jsonl").read_text().splitlines()
    written = notification_from_json(line)
    assert written.kind == "trigger"
    assert written.attribution == attribution_of([fired.evaluation.cost], PRICES)  # type: ignore[list-item]
    assert written.attribution is not None
    top = max(written.attribution.shares, key=lambda s: abs(s.change_usd))
    assert top.factor == "model_mix"
