"""Every rule of the shipped alerts.toml fires on its incident and stays quiet on normal traffic.

The acceptance of the rules file: for each rule, one test drives synthetic traffic with the
incident the rule exists for and expects a `firing` alert of that rule, with the tier the
reference guide gives it (DESIGN.md, "Alert tiers") and the series labels of the incident,
within a sensible time of its onset; and one test runs normal traffic (diurnal, quiet nights,
a weekend) and expects no alert of the rule, and that the rule actually decided something on it
(a rule that is gated on every window "stays quiet" vacuously).

What runs is the flow's window step (`tests.fakes.rule_harness`: pre-aggregation, windows, rule
evaluation and alert lifecycle of `flows/`), fed by `tests.fakes.traffic`. The timeline:

- Normal traffic starts on Monday 2025-01-06 12:00 UTC with every shipped rule. On Tuesday
  13:00 (25 hours later: every 1-day baseline is warm) the state is kept (`day` snapshot) and
  alerts.toml is hot-reloaded down to the detector rules: those with day-long baselines run a
  full armed day more, to Wednesday 13:00, and those that need a week of history (seasonal
  z-score, 7-day trends) run on to the Tuesday after next, 13:00: the `week` snapshot, where
  the run ends. Quiet tests read this run: threshold rules see one full diurnal cycle (a peak,
  an evening, a quiet night, a morning), detector rules at least a day with an armed baseline,
  week-long rules a weekend and eight days (the seasonal baseline armed for the last day, the
  trends deciding from the second Monday on).
- An incident test copies its snapshot, hot-reloads down to its own rule (rules are evaluated
  independently; `test_narrowing_keeps_a_rules_evaluations` checks that) and replays the same
  traffic plus the incident from 13:00 until the alert fires or its deadline passes.
- The two 7-day trend rules need a week-long incident: one run from Monday 00:00 with both
  trends ramping.

Every scenario is in `SCENARIOS`, keyed by rule name; the tests are parametrized by the rule
names in alerts.toml, so a rule added there without a scenario fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from rules.config import RulesConfig
from rules.load import load_rules
from rules.records import AlertEvent
from tests.fakes.rule_harness import RuleHarness, describe
from tests.fakes.traffic import (
    DAY_NS,
    HOUR_NS,
    MINUTE_NS,
    START_NS,
    SUPPORT_BOT,
    Injection,
    ModelSpec,
    PromptSpec,
    TrafficGenerator,
    batch_job,
    requests_at,
    session_burst,
)

ALERTS = Path(__file__).resolve().parents[2] / "alerts.toml"
SHIPPED = load_rules(ALERTS)
RULE_NAMES = [rule.name for rule in SHIPPED.rules]

pytestmark = pytest.mark.timeout(900)
"""The module takes about 2.5 minutes of CPU (4 wall on 2 cores shared with other work), past
the default 300 s under load. Most of it is `normal_run`'s first 25 hours with every rule: up to
60 ms per event-time minute in the production window step, mostly `SeriesWindows.view`
merging 60 minute buckets for each one-hour threshold rule (TTFT targets, unknown-cost spans,
feedback) and series, every minute."""

NORMAL_START = START_NS + 12 * HOUR_NS
"""Monday 12:00 UTC: the deployment starts."""
DAY_INCIDENT = START_NS + DAY_NS + 13 * HOUR_NS
"""Tuesday 13:00 UTC, near the daily peak: the `day` snapshot, and most incidents start."""
WEEK_INCIDENT = DAY_INCIDENT + 7 * DAY_NS
"""The next Tuesday 13:00: the `week` snapshot."""
TREND_END = START_NS + 8 * DAY_NS + 2 * HOUR_NS
TREND_WITHIN = timedelta(days=8, hours=2)
"""The trends start on Monday 00:00 and need 6 complete days before the test can decide."""

SUPPORT = {"service": "support-bot"}
SUPPORT_CHAT = {"service": "support-bot", "endpoint": "/chat"}
SUPPORT_MINI = {"service": "support-bot", "model": "gpt-4o-mini"}
SUPPORT_OPENAI_MINI = {"service": "support-bot", "provider": "openai", "model": "gpt-4o-mini"}
SEARCH = {"service": "search-assistant"}
SEARCH_ENDPOINT = {"service": "search-assistant", "endpoint": "/search"}


@dataclass(frozen=True)
class Incident:
    """What an incident's injections may look at: the traffic, its start and the warm state."""

    generator: TrafficGenerator
    start_ns: int
    harness: RuleHarness


@dataclass(frozen=True)
class Scenario:
    """The incident a rule exists for, and what its alert must look like."""

    tier: int
    """The reference guide's tier for this alert (DESIGN.md), not read from alerts.toml."""
    labels: Mapping[str, str]
    """The series labels of the alert the incident must raise."""
    incident: Callable[[Incident], tuple[Injection, ...]]
    within: timedelta
    """Deadline from the incident's start to the alert firing (window, `for`, cadence)."""
    what: str
    baseline: str = "day"
    """`day` / `week`: replayed from that snapshot; `trend`: the week-long trend run."""


def _service(name: str, minutes: int, **changes: object) -> Callable[[Incident],
                                                                      tuple[Injection, ...]]:
    def incident(ctx: Incident) -> tuple[Injection, ...]:
        return (Injection(ctx.start_ns, ctx.start_ns + minutes * MINUTE_NS, service=name,
                          changes=changes),)
    return incident


def _models(name: str, minutes: int, *, provider: str | None = None, model: str | None = None,
            **changes: object) -> Callable[[Incident], tuple[Injection, ...]]:
    def incident(ctx: Incident) -> tuple[Injection, ...]:
        return (Injection(ctx.start_ns, ctx.start_ns + minutes * MINUTE_NS, service=name,
                          provider=provider, model=model, model_changes=changes),)
    return incident


def _provider_outage(ctx: Incident) -> tuple[Injection, ...]:
    end = ctx.start_ns + 40 * MINUTE_NS
    return (Injection(ctx.start_ns, end, provider="openai", model_changes={"error_share": 0.5}),)


def _safety_failure(ctx: Incident) -> tuple[Injection, ...]:
    """One answer (gpt-4o-mini, prompt support-v8) that the toxicity guardrail flags."""
    spec = replace(SUPPORT_BOT, models=(replace(SUPPORT_BOT.models[0], error_share=0.0),),
                   prompts=(PromptSpec("support-v8", 1.0),), cache_hit_share=0.0,
                   safety_eval_share=1.0, safety_fail_share=1.0)
    return (requests_at(spec, ctx.start_ns + 20 * 1_000_000_000),)


def _prompt_cost_change(ctx: Incident) -> tuple[Injection, ...]:
    """support-v9 replaces v7/v8 everywhere: a longer system prompt and longer answers."""
    v9 = PromptSpec("support-v9", 1.0, input_tokens=5000.0, output_tokens=500.0)
    return _service("support-bot", 120, prompts=(v9,))(ctx)


def _runaway_session(ctx: Incident) -> tuple[Injection, ...]:
    """One session costing 20x the average session of the last day (an agent in a loop)."""
    end = ctx.start_ns
    session = ctx.harness.metric("cost_per_session", SUPPORT, timedelta(days=1), end)
    request = ctx.harness.metric("cost_per_request", SUPPORT, timedelta(days=1), end)
    assert session is not None and request is not None, "the baseline has no session cost"
    per_minute = 3
    minutes = max(1, round(20 * session / request / per_minute))
    return (session_burst(SUPPORT_BOT, ctx.start_ns, minutes=minutes,
                          calls_per_minute=per_minute, session_id="runaway-agent-1"),)


def _quota_storm(ctx: Incident) -> tuple[Injection, ...]:
    """A backfill job sends 8 600 requests a minute to gpt-4o-mini (limit 10 000)."""
    model = ModelSpec("openai", "gpt-4o-mini", 1.0, ttft_median_s=0.3, tokens_per_s=95.0,
                      error_share=0.0, refusal_share=0.0, truncation_share=0.0)
    job = batch_job("bulk-backfill", model, rpm=8600.0, input_tokens=600.0, output_tokens=80.0)
    return (Injection(ctx.start_ns, ctx.start_ns + 8 * MINUTE_NS, add_service=job),)


def _spend_burst(ctx: Incident) -> tuple[Injection, ...]:
    """A report job on claude-opus-4-1 with 150k-token contexts: about $2.40 a call, 30 a
    minute, so the day's $800 (80% of the $1000 budget) goes within the quarter hour."""
    model = ModelSpec("anthropic", "claude-opus-4-1", 1.0, ttft_median_s=1.5,
                      tokens_per_s=40.0, error_share=0.0, refusal_share=0.0,
                      truncation_share=0.0)
    job = batch_job("report-generator", model, rpm=30.0, input_tokens=150_000.0,
                    output_tokens=2000.0, max_output_tokens=8192)
    return (Injection(ctx.start_ns, ctx.start_ns + 60 * MINUTE_NS, add_service=job),)


def _unknown_model(ctx: Incident) -> tuple[Injection, ...]:
    """support-bot starts routing 10% of calls to gpt-5.1, which the price table lacks."""
    assert ctx.generator.prices.price_of("gpt-5.1") is None, "gpt-5.1 is priced now"
    new = ModelSpec("openai", "gpt-5.1", 0.1, ttft_median_s=0.35, tokens_per_s=90.0)
    return _service("support-bot", 60, models=(*SUPPORT_BOT.models, new))(ctx)


def _worse_prompt(ctx: Incident) -> tuple[Injection, ...]:
    """support-v9 goes to 20% of traffic and is judged 20% worse than v7/v8."""
    prompts = (PromptSpec("support-v7", 0.4), PromptSpec("support-v8", 0.4),
               PromptSpec("support-v9", 0.2, quality=0.66))
    return _service("support-bot", 180, prompts=prompts)(ctx)


def _experiment(ctx: Incident) -> tuple[Injection, ...]:
    """An A/B test on search: search-v4 gets half the traffic and is judged 8% better."""
    prompts = (PromptSpec("search-v3", 0.5, quality=0.8, input_tokens=3000.0,
                          output_tokens=300.0),
               PromptSpec("search-v4", 0.5, quality=0.864, input_tokens=3000.0,
                          output_tokens=300.0))
    return _service("search-assistant", 180, prompts=prompts)(ctx)


def _new_segment(ctx: Incident) -> tuple[Injection, ...]:
    """A school partnership: an `edu` user segment appears with a sixth of support traffic."""
    return _service("support-bot", 90, segments=(*SUPPORT_BOT.segments, ("edu", 0.2)))(ctx)


def _retrieval_trend(ctx: Incident) -> tuple[Injection, ...]:
    """The vector index degrades: retrieval latency rises by 60% over 8 days."""
    return (Injection(ctx.start_ns, TREND_END, service="search-assistant",
                      ramp={"retrieval_latency_factor": (1.0, 1.6)}),)


def _session_cost_trend(ctx: Incident) -> tuple[Injection, ...]:
    """Conversation history is no longer truncated: input tokens double over 8 days."""
    return (Injection(ctx.start_ns, TREND_END, service="support-bot",
                      ramp={"input_token_factor": (1.0, 2.0)}),)


M = timedelta(minutes=1)
SCENARIOS: dict[str, Scenario] = {
    # --- tier 1 ---
    "error-rate-high": Scenario(
        1, SUPPORT_OPENAI_MINI, _models("support-bot", 40, model="gpt-4o-mini", error_share=0.3),
        20 * M, "30% of gpt-4o-mini calls fail (5m window, for 5m)"),
    "provider-error-rate-high": Scenario(
        1, {"provider": "openai"}, _provider_outage, 20 * M,
        "half of all OpenAI calls fail, in both services"),
    "ttft-p99-high": Scenario(
        1, SUPPORT_OPENAI_MINI,
        _models("support-bot", 30, model="gpt-4o-mini", ttft_stall_share=0.1, ttft_stall_s=90.0),
        20 * M, "10% of gpt-4o-mini streams stall ~90 s before the first token"),
    "latency-p99-critical": Scenario(
        1, SUPPORT_CHAT,
        _service("support-bot", 30, latency_stall_share=0.1, latency_stall_s=75.0), 20 * M,
        "10% of chat requests hang 70-100 s in a tool call"),
    "safety-eval-failure": Scenario(
        1, {**SUPPORT_MINI, "prompt_template_version": "support-v8"}, _safety_failure, 5 * M,
        "one answer fails the toxicity guardrail"),
    "eval-score-drop": Scenario(
        1, SUPPORT_MINI, _service("support-bot", 120, quality_shift=-0.35), 20 * M,
        "judge quality falls from 0.82 to 0.47 (-43%)"),
    # --- tier 2 ---
    "latency-p99-high": Scenario(
        2, SUPPORT_CHAT,
        _service("support-bot", 90, latency_stall_share=0.05, latency_stall_s=35.0), 45 * M,
        "5% of chat requests take 32-50 s (15m window, for 15m)"),
    "cost-per-request-spike": Scenario(
        2, SUPPORT_CHAT, _prompt_cost_change, 50 * M,
        "prompt support-v9 replaces v7/v8: cost per request x2.7"),
    "session-cost-outlier": Scenario(
        2, SUPPORT, _runaway_session, 75 * M,
        "one session costs 20x the day's average session"),
    "output-speed-degraded": Scenario(
        2, {"provider": "openai", "model": "gpt-4o-mini"},
        _models("support-bot", 120, model="gpt-4o-mini", decode_speed_factor=0.5), 80 * M,
        "gpt-4o-mini decodes at half its usual speed"),
    "input-tokens-outlier": Scenario(
        2, SEARCH_ENDPOINT, _service("search-assistant", 60, input_token_factor=4.0), 35 * M,
        "retrieval stuffs 4x the context into every prompt"),
    "output-tokens-outlier": Scenario(
        2, SEARCH_ENDPOINT, _service("search-assistant", 60, output_token_factor=4.0), 35 * M,
        "answers become 4x longer"),
    "negative-feedback-high": Scenario(
        2, SUPPORT_CHAT, _service("support-bot", 120, negative_feedback_share=0.4), 45 * M,
        "40% of feedback is thumbs-down"),
    "regeneration-rate-high": Scenario(
        2, SUPPORT_CHAT, _service("support-bot", 60, regeneration_share=0.3), 30 * M,
        "users regenerate 30% of answers"),
    "refusal-rate-spike": Scenario(
        2, SUPPORT_MINI, _models("support-bot", 120, model="gpt-4o-mini", refusal_share=0.12),
        60 * M, "gpt-4o-mini refuses 12% of requests instead of 2%"),
    "heuristic-pass-rate-low": Scenario(
        2, SUPPORT_CHAT, _service("support-bot", 60, heuristic_fail_share=0.25), 15 * M,
        "25% of answers are invalid JSON"),
    "quality-score-drop": Scenario(
        2, SUPPORT, _service("support-bot", 180, quality_shift=-0.15), 60 * M,
        "judge quality falls from 0.82 to 0.67 (-18%)"),
    "groundedness-low": Scenario(
        2, SEARCH_ENDPOINT, _service("search-assistant", 60, groundedness=0.6), 30 * M,
        "faithfulness falls from 0.90 to 0.60"),
    "truncation-share-high": Scenario(
        2, SUPPORT_MINI,
        _models("support-bot", 60, model="gpt-4o-mini", truncation_share=0.6), 20 * M,
        "60% of generated gpt-4o-mini answers hit max_tokens"),
    "spend-quota-80pct": Scenario(
        2, {"provider": "anthropic"}, _spend_burst, 30 * M,
        "a report job on claude-opus-4-1 spends $72 a minute"),
    "request-quota-80pct": Scenario(
        2, {"provider": "openai", "model": "gpt-4o-mini"}, _quota_storm, 10 * M,
        "a backfill sends 8 600 requests a minute (86% of the quota)"),
    "prompt-version-worse": Scenario(
        2, {**SUPPORT, "prompt_template_version": "support-v9"}, _worse_prompt, 90 * M,
        "prompt support-v9 (20% of traffic) is judged 20% worse"),
    "request-rate-anomaly": Scenario(
        2, SEARCH, _service("search-assistant", 60, rate_factor=0.0), 30 * M,
        "search traffic drops to zero on a Tuesday afternoon", baseline="week"),
    "unknown-cost-spans": Scenario(
        2, {"service": "support-bot", "provider": "openai", "model": "gpt-5.1"},
        _unknown_model, 10 * M, "calls to gpt-5.1, which has no price"),
    # --- tier 3 ---
    "ttft-p50-target": Scenario(
        3, SUPPORT_MINI, _models("support-bot", 180, model="gpt-4o-mini", ttft_factor=3.5),
        150 * M, "gpt-4o-mini's TTFT triples: median over 500 ms for over an hour"),
    "ttft-p99-target": Scenario(
        3, SUPPORT_MINI,
        _models("support-bot", 180, model="gpt-4o-mini", ttft_stall_share=0.04,
                ttft_stall_s=8.0), 150 * M,
        "4% of gpt-4o-mini streams wait 7-10 s for the first token"),
    "cache-hit-rate-low": Scenario(
        3, SUPPORT_CHAT, _service("support-bot", 240, cache_hit_share=0.1), 200 * M,
        "the semantic cache answers 10% instead of 45%"),
    "retrieval-latency-trend": Scenario(
        3, SEARCH, _retrieval_trend, TREND_WITHIN,
        "retrieval latency rises 60% over 8 days", baseline="trend"),
    "new-user-segment": Scenario(
        3, {**SUPPORT, "user_segment": "edu"}, _new_segment, 40 * M,
        "a new `edu` segment sends about 3 requests a minute"),
    "prompt-experiment-significant": Scenario(
        3, {**SEARCH, "prompt_template_version": "search-v4"}, _experiment, 60 * M,
        "A/B test: search-v4 (half the traffic) is judged 8% better"),
    "session-cost-trend": Scenario(
        3, SUPPORT, _session_cost_trend, TREND_WITHIN,
        "input tokens per call, and so session cost, double over 8 days", baseline="trend"),
}
WEEK_RULES = tuple(name for name, s in SCENARIOS.items() if s.baseline in ("week", "trend"))
"""Rules that need a week of history (seasonal z-score, 7-day trends)."""
ARMED_DAY_RULES = tuple(r.name for r in SHIPPED.rules
                        if r.detector is not None and r.name not in WEEK_RULES)
"""Detector rules with baselines of about a day: they arm 12-24 hours after the start, so they
also run through the second day."""


@dataclass(frozen=True)
class NormalRun:
    harness: RuleHarness
    """After the whole run (events and statistics of every rule)."""
    day: RuleHarness
    """At Tuesday 13:00, every rule warm."""
    week: RuleHarness
    """At the second Tuesday 13:00, only `WEEK_RULES`."""


def quiet_coverage(rule: str) -> str:
    if rule in WEEK_RULES:
        return "Monday 12:00 to the Tuesday after next, 13:00"
    if rule in ARMED_DAY_RULES:
        return "Monday 12:00 to Wednesday 13:00"
    return "Monday 12:00 to Tuesday 13:00"


@pytest.fixture(scope="module")
def generator() -> TrafficGenerator:
    return TrafficGenerator(seed=7)


@pytest.fixture(scope="module")
def normal_run(generator: TrafficGenerator) -> NormalRun:
    """Normal traffic only; alerts.toml is hot-reloaded down as rule classes reach the end of
    their quiet coverage (`quiet_coverage`)."""
    harness = RuleHarness(SHIPPED)
    harness.feed(generator.minutes(NORMAL_START, DAY_INCIDENT))
    day = harness.snapshot()
    harness.narrow(*ARMED_DAY_RULES, *WEEK_RULES)
    harness.feed(generator.minutes(DAY_INCIDENT, DAY_INCIDENT + DAY_NS))
    harness.narrow(*WEEK_RULES)
    harness.feed(generator.minutes(DAY_INCIDENT + DAY_NS, WEEK_INCIDENT))
    return NormalRun(harness, day, harness.snapshot())


@pytest.fixture(scope="module")
def trend_run(generator: TrafficGenerator) -> RuleHarness:
    rules = [name for name, s in SCENARIOS.items() if s.baseline == "trend"]
    harness = RuleHarness(_only(SHIPPED, rules), trace=rules)
    context = Incident(generator, START_NS, harness)
    injections = [i for name in rules for i in SCENARIOS[name].incident(context)]
    traffic = generator.with_injections(*injections)

    def all_fired(events: list[AlertEvent]) -> bool:
        return {e.rule for e in events if e.state == "firing"} >= set(rules)

    harness.feed(traffic.minutes(START_NS, TREND_END), until=all_fired)
    return harness


def _only(config: RulesConfig, names: list[str]) -> RulesConfig:
    return config.model_copy(update={"rules": tuple(r for r in config.rules if r.name in names)})


def _scenario(rule: str) -> Scenario:
    scenario = SCENARIOS.get(rule)
    if scenario is None:
        pytest.fail(f"alerts.toml rule {rule!r} has no incident scenario in SCENARIOS: add "
                    f"one (the traffic that must make it fire, its tier and labels)")
    return scenario


def test_scenarios_cover_exactly_the_shipped_rules() -> None:
    assert sorted(SCENARIOS) == sorted(RULE_NAMES)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_rule_fires_on_its_incident(rule: str, generator: TrafficGenerator,
                                    normal_run: NormalRun, trend_run: RuleHarness) -> None:
    scenario = _scenario(rule)
    labels = tuple(sorted(scenario.labels.items()))
    if scenario.baseline == "trend":
        harness, start = trend_run, START_NS
    else:
        harness = (normal_run.day if scenario.baseline == "day" else normal_run.week).snapshot()
        start = DAY_INCIDENT if scenario.baseline == "day" else WEEK_INCIDENT
        harness.narrow(rule)
        harness.trace.add(rule)
        injections = scenario.incident(Incident(generator, start, harness))
        traffic = generator.with_injections(*injections)

        def fired(events: list[AlertEvent]) -> bool:
            return any(e.rule == rule and e.state == "firing" and e.labels == labels
                       for e in events)

        deadline = start + scenario.within // timedelta(microseconds=1) * 1000
        harness.feed(traffic.minutes(start, deadline), until=fired)
    firing = [e for e in harness.fired(rule) if e.labels == labels]
    seen = harness.traced(rule, labels) or harness.traced(rule)
    assert firing, (
        f"{rule} did not fire on its incident ({scenario.what}) within {scenario.within}; "
        f"expected labels {dict(labels)}; other alerts of the rule: "
        f"{[dict(e.labels) for e in harness.fired(rule)]}\n"
        f"evaluations: {harness.stats[rule].summary()}\nlast ones:\n{describe(seen)}")
    first = firing[0]
    delay = timedelta(microseconds=(first.at_unix_ns - start) // 1000)
    assert first.tier == scenario.tier, f"{rule} fired with tier {first.tier}"
    assert timedelta(0) <= delay <= scenario.within, f"{rule} fired {delay} after the onset"


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_rule_stays_quiet_on_normal_traffic(rule: str, normal_run: NormalRun) -> None:
    _scenario(rule)
    harness = normal_run.harness
    alerts = harness.fired(rule)
    stats = harness.stats[rule]
    assert not alerts, (
        f"{rule} fired on normal traffic ({quiet_coverage(rule)}): "
        + "; ".join(f"{e.at:%a %H:%M} {dict(e.labels)} value={e.evaluation.value} "
                    f"({e.evaluation.detail})" for e in alerts[:5])
        + f"\nevaluations: {stats.summary()}")
    assert stats.decisive > 0, (
        f"{rule} never decided anything on normal traffic ({quiet_coverage(rule)}), so its "
        f"silence proves nothing: "
        f"{stats.summary()}")


def test_narrowing_keeps_a_rules_evaluations(generator: TrafficGenerator,
                                             normal_run: NormalRun) -> None:
    """A hot reload down to one rule (what incident tests do) leaves that rule's evaluations
    exactly as they are next to other rules, of its own family and others."""
    rules = ("error-rate-high", "ttft-p99-high", "cost-per-request-spike", "new-user-segment")
    end = DAY_INCIDENT + 30 * MINUTE_NS
    together = normal_run.day.snapshot()
    together.narrow(*rules)
    together.trace.update(rules)
    together.feed(generator.minutes(DAY_INCIDENT, end))
    for rule in rules:
        alone = normal_run.day.snapshot()
        alone.narrow(rule)
        alone.trace.add(rule)
        alone.feed(generator.minutes(DAY_INCIDENT, end))
        assert alone.traced(rule) == together.traced(rule), rule
        assert alone.traced(rule), f"{rule} was not evaluated"

