"""The synthetic traffic generator and the rule harness behave as the rule tests assume."""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from ingest.span import EvalResult, LLMSpan
from metrics.evals import DEFAULT_CATEGORIES
from rules.load import parse_rules
from tests.fakes.rule_harness import RuleHarness
from tests.fakes.rules_toml import CONSOLE_TIERS
from tests.fakes.traffic import (
    DAY_NS,
    GROUNDEDNESS_EVAL,
    HOUR_NS,
    MAX_SPILL_NS,
    MINUTE_NS,
    QUALITY_EVAL,
    SAFETY_EVAL,
    SEARCH_ASSISTANT,
    START_NS,
    SUPPORT_BOT,
    Injection,
    Record,
    TrafficGenerator,
    batch_job,
    diurnal_share,
    poisson,
    records_by_kind,
    requests_at,
    session_burst,
)

TUESDAY_PEAK = START_NS + DAY_NS + 15 * HOUR_NS


@pytest.fixture(scope="module")
def generator() -> TrafficGenerator:
    return TrafficGenerator(seed=3)


@pytest.fixture(scope="module")
def peak_hours(generator: TrafficGenerator) -> list[Record]:
    """Tuesday 12:00-18:00: about 4 000 requests."""
    return [r for _, records in generator.minutes(TUESDAY_PEAK - 3 * HOUR_NS,
                                                  TUESDAY_PEAK + 3 * HOUR_NS)
            for r in records]


def _spans(records: list[Record], kind: str, service: str | None = None) -> list[LLMSpan]:
    return [r for r in records if isinstance(r, LLMSpan) and r.kind == kind
            and (service is None or r.context.service == service)]


def _evals(records: list[Record], name: str) -> list[EvalResult]:
    return [r for r in records if isinstance(r, EvalResult) and r.score.name == name]


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


# --- generator ---

def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    minute = TUESDAY_PEAK
    assert TrafficGenerator(seed=1).minute(minute) == TrafficGenerator(seed=1).minute(minute)
    assert TrafficGenerator(seed=1).minute(minute) != TrafficGenerator(seed=2).minute(minute)


def test_a_minute_does_not_depend_on_what_was_generated_before() -> None:
    """Runs restored from a snapshot replay exactly the traffic of an uninterrupted run."""
    first = TrafficGenerator(seed=5)
    list(first.minutes(TUESDAY_PEAK - 30 * MINUTE_NS, TUESDAY_PEAK))
    assert first.minute(TUESDAY_PEAK) == TrafficGenerator(seed=5).minute(TUESDAY_PEAK)


def test_load_is_diurnal_with_quiet_nights_and_a_weekend_dip() -> None:
    monday = START_NS
    night, peak = diurnal_share(SUPPORT_BOT, monday + 3 * HOUR_NS), \
        diurnal_share(SUPPORT_BOT, monday + 15 * HOUR_NS)
    saturday = diurnal_share(SUPPORT_BOT, monday + 5 * DAY_NS + 15 * HOUR_NS)
    assert night == pytest.approx(SUPPORT_BOT.night_share)
    assert peak == pytest.approx(1.0)
    assert saturday == pytest.approx(SUPPORT_BOT.weekend_share)
    assert diurnal_share(SUPPORT_BOT, monday + 9 * HOUR_NS) < 0.5 < \
        diurnal_share(SUPPORT_BOT, monday + 13 * HOUR_NS)


def test_request_counts_follow_the_expected_rate(generator: TrafficGenerator) -> None:
    def roots(start: int, hours: int) -> int:
        return sum(len(_spans(records, "request", "support-bot"))
                   for _, records in generator.minutes(start, start + hours * HOUR_NS))

    peak = roots(TUESDAY_PEAK - HOUR_NS, 2)
    night = roots(START_NS + DAY_NS + 2 * HOUR_NS, 2)
    expected_peak = 2 * 60 * SUPPORT_BOT.peak_rpm * statistics.mean(
        diurnal_share(SUPPORT_BOT, TUESDAY_PEAK - HOUR_NS + m * MINUTE_NS) for m in range(120))
    assert abs(peak - expected_peak) < 4 * math.sqrt(expected_peak)
    assert night < 0.2 * peak


def test_poisson_draws_have_the_right_mean() -> None:
    rng = TrafficGenerator(seed=1).rng("poisson")
    for lam in (0.3, 4.0, 80.0):
        draws = [poisson(rng, lam) for _ in range(4000)]
        assert statistics.mean(draws) == pytest.approx(lam, rel=0.05, abs=0.03)
    assert poisson(rng, 0.0) == 0


def test_every_request_is_a_consistent_trace(peak_hours: list[Record]) -> None:
    roots = {r.trace_id: r for r in _spans(peak_hours, "request")}
    children = [r for r in peak_hours if isinstance(r, LLMSpan) and r.kind != "request"]
    assert roots and children
    for span in children:
        root = roots[span.trace_id]
        assert span.parent_span_id == root.span_id
        assert root.start_unix_ns <= span.start_unix_ns < span.end_unix_ns <= root.end_unix_ns
        assert span.context == root.context
    llm_ids = {(s.trace_id, s.span_id): s for s in _spans(peak_hours, "llm")}
    for result in (r for r in peak_hours if isinstance(r, EvalResult)):
        judged = llm_ids[(result.trace_id, result.span_id or "")]
        assert result.at_unix_ns > judged.end_unix_ns
        assert (result.model, result.provider) == (judged.model, judged.provider)
        assert result.context == judged.context
    for root in roots.values():
        assert root.context.service and root.context.endpoint and root.context.session_id
        assert root.context.user_segment and root.context.prompt_template_version


def test_event_times_stay_within_the_promised_spill(generator: TrafficGenerator) -> None:
    stalled = generator.with_injections(Injection(
        TUESDAY_PEAK, TUESDAY_PEAK + 5 * MINUTE_NS, changes={"latency_stall_share": 1.0},
        model_changes={"ttft_stall_share": 1.0}))
    for minute, records in stalled.minutes(TUESDAY_PEAK, TUESDAY_PEAK + 5 * MINUTE_NS):
        for record in records:
            at = record.end_unix_ns if isinstance(record, LLMSpan) else record.at_unix_ns
            assert minute <= at < minute + MAX_SPILL_NS


def test_costs_come_from_the_price_table(generator: TrafficGenerator,
                                         peak_hours: list[Record]) -> None:
    calls = _spans(peak_hours, "llm") + _spans(peak_hours, "embedding")
    priced = [s for s in calls if s.input_tokens is not None and not s.is_error]
    assert priced
    for span in priced:
        price = generator.prices.price_of(span.request_model or "")
        assert price is not None
        assert span.cost_usd == pytest.approx(price.cost_usd(span.input_tokens or 0,
                                                             span.output_tokens or 0, 0))
        assert span.cost_source == "pricing"
    for span in calls:
        if span.is_cache_hit or span.is_error:
            assert span.cost_usd == 0.0 and span.input_tokens is None
    assert all(s.unknown_cost_reason is None for s in calls)


def test_normal_traffic_has_the_documented_shares(peak_hours: list[Record]) -> None:
    support = _spans(peak_hours, "llm", "support-bot")
    answered = [s for s in support if not s.is_cache_hit and not s.is_error]
    roots = _spans(peak_hours, "request", "support-bot")
    with_feedback = [r for r in roots if r.feedback is not None]
    assert _share([bool(s.is_cache_hit) for s in support]) == pytest.approx(0.45, abs=0.03)
    assert _share([s.is_error for s in support]) < 0.01
    assert _share([s.is_refusal for s in answered]) == pytest.approx(0.02, abs=0.01)
    assert _share(["length" in s.finish_reasons for s in answered]) == pytest.approx(
        0.015, abs=0.01)
    assert _share([r.feedback == "negative" for r in with_feedback]) == pytest.approx(
        0.05, abs=0.02)
    assert _share([bool(r.is_regenerated) for r in roots]) == pytest.approx(0.02, abs=0.01)
    models = Counter(s.model for s in support)
    assert models["gpt-4o-mini"] / len(support) == pytest.approx(0.8, abs=0.03)
    versions = Counter(s.context.prompt_template_version for s in support)
    assert versions["support-v7"] / len(support) == pytest.approx(0.5, abs=0.04)
    ttft = sorted(s.time_to_first_token_s or 0.0 for s in answered if s.model == "gpt-4o-mini")
    assert ttft[len(ttft) // 2] == pytest.approx(0.32, rel=0.1)
    assert ttft[int(0.99 * len(ttft))] < 5.0


def test_every_eval_feeds_its_metric_category(peak_hours: list[Record]) -> None:
    assert DEFAULT_CATEGORIES.category_of(QUALITY_EVAL) == "quality"
    assert DEFAULT_CATEGORIES.category_of(GROUNDEDNESS_EVAL) == "groundedness"
    assert DEFAULT_CATEGORIES.category_of(SAFETY_EVAL) == "safety"
    assert DEFAULT_CATEGORIES.category_of(SUPPORT_BOT.heuristic_eval or "") == "heuristic"
    quality = [e.score.score or 0.0 for e in _evals(peak_hours, QUALITY_EVAL)
               if e.context.service == "support-bot"]
    grounded = [e.score.score or 0.0 for e in _evals(peak_hours, GROUNDEDNESS_EVAL)]
    assert statistics.mean(quality) == pytest.approx(0.82, abs=0.02)
    assert statistics.mean(grounded) == pytest.approx(0.9, abs=0.02)
    inline = [score for span in _spans(peak_hours, "llm") for score in span.evals]
    safety = [s for s in inline if s.name == SAFETY_EVAL]
    assert safety and all(DEFAULT_CATEGORIES.passed(s) for s in safety)
    checks = [DEFAULT_CATEGORIES.passed(s) for s in inline if s.name == "json_valid"]
    assert _share([c is True for c in checks]) > 0.99


def test_sessions_keep_one_user_and_segment(peak_hours: list[Record]) -> None:
    by_session: dict[str, set[tuple[str | None, str | None]]] = {}
    turns: Counter[str] = Counter()
    for root in _spans(peak_hours, "request"):
        session = root.context.session_id or ""
        by_session.setdefault(session, set()).add((root.context.user_id,
                                                   root.context.user_segment))
        turns[session] += 1
    assert all(len(users) == 1 for users in by_session.values())
    support = [n for s, n in turns.items() if s.startswith("support-bot")]
    assert statistics.mean(support) == pytest.approx(SUPPORT_BOT.session_turns, rel=0.35)
    segments = Counter(r.context.user_segment for r in _spans(peak_hours, "request",
                                                              "search-assistant"))
    assert set(segments) == {"free", "pro"}


def test_search_requests_embed_and_retrieve(peak_hours: list[Record]) -> None:
    kinds = records_by_kind([r for r in peak_hours if r.context.service == "search-assistant"])
    assert kinds["embedding"] == kinds["retrieval"] == kinds["llm"] == kinds["request"]
    assert kinds["eval"] > 0
    latency = sorted(s.duration_s for s in _spans(peak_hours, "retrieval"))
    assert latency[len(latency) // 2] == pytest.approx(SEARCH_ASSISTANT.retrieval_p50_s,
                                                       rel=0.15)


# --- injections ---

def test_injections_change_only_their_target_and_window(generator: TrafficGenerator) -> None:
    start, end = TUESDAY_PEAK, TUESDAY_PEAK + 10 * MINUTE_NS
    broken = generator.with_injections(Injection(start, end, service="support-bot",
                                                 model="gpt-4o-mini",
                                                 model_changes={"error_share": 1.0}))
    inside = [r for _, rs in broken.minutes(start, end) for r in rs]
    after = broken.minute(end)
    mini = [s for s in _spans(inside, "llm", "support-bot") if s.model == "gpt-4o-mini"]
    assert all(s.is_error for s in mini if not s.is_cache_hit)
    assert not any(s.is_error for s in _spans(inside, "llm", "search-assistant"))
    assert not any(s.is_error for s in _spans(inside, "llm") if s.model != "gpt-4o-mini")
    assert after == generator.minute(end)


def test_a_ramp_moves_linearly_across_its_window() -> None:
    ramp = Injection(0, 100, service="search-assistant", ramp={"retrieval_latency_factor":
                                                                (1.0, 2.0)})
    assert ramp.apply(SEARCH_ASSISTANT, 0).retrieval_latency_factor == 1.0
    assert ramp.apply(SEARCH_ASSISTANT, 50).retrieval_latency_factor == pytest.approx(1.5)
    assert ramp.apply(SEARCH_ASSISTANT, 100) == SEARCH_ASSISTANT
    assert ramp.apply(SUPPORT_BOT, 50) == SUPPORT_BOT


def test_injections_reject_unknown_fields_and_empty_windows() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        Injection(0, 1, changes={"error_rate": 0.5})
    with pytest.raises(ValueError, match="before it starts"):
        Injection(5, 5)


def test_extra_services_and_records_appear_only_while_active(
        generator: TrafficGenerator) -> None:
    job = batch_job("backfill", replace(SUPPORT_BOT.models[0], error_share=0.0), rpm=500.0,
                    input_tokens=500.0, output_tokens=50.0)
    session = session_burst(SUPPORT_BOT, TUESDAY_PEAK, minutes=2, calls_per_minute=10,
                            session_id="loop-1")
    one = requests_at(SUPPORT_BOT, TUESDAY_PEAK + 30 * 1_000_000_000, session_id="single")
    traffic = generator.with_injections(
        Injection(TUESDAY_PEAK, TUESDAY_PEAK + MINUTE_NS, add_service=job), session, one)
    first, second, third = (traffic.minute(TUESDAY_PEAK + k * MINUTE_NS) for k in range(3))
    backfill = _spans(first, "llm", "backfill")
    assert 400 < len(backfill) < 600
    assert all(s.parent_span_id is None for s in backfill)
    assert not _spans(second, "llm", "backfill")
    assert len([r for r in _spans(first + second, "request")
                if r.context.session_id == "loop-1"]) == 20
    assert not any(r.context.session_id == "loop-1" for r in _spans(third, "request"))
    single = [r for r in _spans(first, "request") if r.context.session_id == "single"]
    assert len(single) == 1 and single[0].start_unix_ns >= TUESDAY_PEAK + 30 * 10**9


def test_a_day_of_traffic_takes_seconds() -> None:
    started = time.perf_counter()
    records = sum(len(rs) for _, rs in TrafficGenerator(seed=9).minutes(START_NS,
                                                                       START_NS + DAY_NS))
    elapsed = time.perf_counter() - started
    assert records > 30_000
    assert elapsed < 10, f"one day of traffic ({records} records) took {elapsed:.1f} s"


# --- harness ---

RULES = CONSOLE_TIERS + """
[[rules]]
name = "errors"
tier = 1
metric = "error_rate"
group_by = ["service", "model"]
over = "5m"
when = "> 20%"
min_samples = 10
for = "2m"
runbook = "r"

[[rules]]
name = "slow"
tier = 2
metric = "latency_p99"
group_by = ["service"]
over = "5m"
when = "> 60s"
runbook = "r"
"""


def _outage(generator: TrafficGenerator) -> TrafficGenerator:
    return generator.with_injections(Injection(
        TUESDAY_PEAK, TUESDAY_PEAK + 20 * MINUTE_NS, service="support-bot", model="gpt-4o-mini",
        model_changes={"error_share": 0.8}))


def test_the_harness_fires_resolves_and_labels_like_the_flow(
        generator: TrafficGenerator) -> None:
    harness = RuleHarness(parse_rules(RULES), trace=["errors"])
    events = harness.feed(_outage(generator).minutes(TUESDAY_PEAK - 30 * MINUTE_NS,
                                                     TUESDAY_PEAK + 60 * MINUTE_NS))
    fired = harness.fired("errors")
    assert [dict(e.labels) for e in fired] == [{"service": "support-bot",
                                               "model": "gpt-4o-mini"}]
    onset = fired[0].started_at_unix_ns
    assert TUESDAY_PEAK < onset <= TUESDAY_PEAK + 3 * MINUTE_NS
    assert fired[0].at_unix_ns - onset >= 2 * MINUTE_NS
    assert [e.state for e in events if e.rule == "errors"] == ["firing", "resolved"]
    assert not harness.fired("slow")
    assert harness.stats["slow"].decisive > 0
    breaches = [e for e in harness.traced("errors") if e.is_breach]
    assert breaches and all(e.value is not None and e.value > 0.2 for e in breaches)
    five = timedelta(minutes=5)
    during = harness.metric("error_rate", {"service": "support-bot", "model": "gpt-4o-mini"},
                            five, TUESDAY_PEAK + 10 * MINUTE_NS)
    assert during is not None and during > 0.2
    assert harness.metric("error_rate", {"service": "nope", "model": "x"}, five,
                          TUESDAY_PEAK) is None


def test_shards_and_snapshots_do_not_change_the_outcome(generator: TrafficGenerator) -> None:
    traffic = _outage(generator)
    warm = list(traffic.minutes(TUESDAY_PEAK - 20 * MINUTE_NS, TUESDAY_PEAK))
    rest = list(traffic.minutes(TUESDAY_PEAK, TUESDAY_PEAK + 30 * MINUTE_NS))
    one = RuleHarness(parse_rules(RULES))
    one.feed(warm)
    copy = one.snapshot()
    one.feed(rest)
    copy.feed(rest)
    sharded = RuleHarness(parse_rules(RULES), shards=4)
    sharded.feed(warm + rest)

    def outcome(h: RuleHarness) -> list[tuple[str, str, int, tuple[tuple[str, str], ...]]]:
        return [(e.rule, e.state, e.at_unix_ns, e.labels) for e in h.events]

    assert outcome(one) == outcome(copy) == outcome(sharded)
    assert outcome(one)


def test_the_harness_refuses_records_behind_its_closed_edge(
        generator: TrafficGenerator) -> None:
    harness = RuleHarness(parse_rules(RULES))
    harness.feed(generator.minutes(TUESDAY_PEAK, TUESDAY_PEAK + 2 * MINUTE_NS))
    with pytest.raises(ValueError, match="behind the closed edge"):
        harness.add(generator.minute(TUESDAY_PEAK))
    with pytest.raises(KeyError, match="nope"):
        harness.narrow("nope")
    harness.narrow("slow")
    assert [r.name for r in harness.config.rules] == ["slow"]
