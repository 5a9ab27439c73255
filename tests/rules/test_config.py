"""The alerts.toml models: conditions, matchers, defaults, templates, inhibition, and the
shipped rules covering every alert of the reference guide (DESIGN.md)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

import rules.config
import rules.silences
from rules.config import (
    DEFAULT_INHIBIT,
    Condition,
    DigestReceiver,
    RulesConfig,
    SlackReceiver,
    render,
)
from rules.load import load_rules, parse_rules
from rules.records import AlertEvent, Evaluation
from rules.silences import Matcher, parse_matchers
from tests.fakes.rules_toml import CONSOLE_TIERS

SHIPPED = load_rules(Path(__file__).resolve().parents[2] / "alerts.toml")
def one_rule(body: str) -> RulesConfig:
    return parse_rules(CONSOLE_TIERS + '[[rules]]\nname = "r"\nrunbook = "Fix it."\n' + body)


@pytest.mark.parametrize("module", [rules.config, rules.silences])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "op", "threshold", "unit"), [
    ("> 0.05", ">", 0.05, ""),
    (">= 5%", ">=", 0.05, "%"),
    ("< 500ms", "<", 0.5, "time"),
    ("<=60s", "<=", 60.0, "time"),
    ("> 2m", ">", 120.0, "time"),
    ("> 1e3", ">", 1000.0, ""),
    ("< -1.5", "<", -1.5, ""),
])
def test_condition_parsing(text: str, op: str, threshold: float, unit: str) -> None:
    condition = Condition.parse(text)
    assert (condition.op, condition.unit) == (op, unit)
    assert condition.threshold == pytest.approx(threshold)


@pytest.mark.parametrize("text", ["== 1", "> ", "5%", "> 5 %%", "> 5 apples"])
def test_condition_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not a condition"):
        Condition.parse(text)


def test_matchers_table_and_list_forms_agree() -> None:
    table = parse_matchers({"service": "checkout", "model": "~gpt-4.*", "env": "!dev",
                            "kind": "!~embed.*"})
    listed = parse_matchers(["service=checkout", 'model=~"gpt-4.*"', "env != dev",
                             "kind!~embed.*"])
    assert table == listed
    labels = {"service": "checkout", "model": "gpt-4o", "kind": "llm"}
    assert all(m.matches(labels.get(m.name, "")) for m in table)
    assert not Matcher.parse("model=~gpt-4").matches("gpt-4o")  # anchored, like Prometheus
    assert Matcher.parse("env!=prod").matches("")  # an absent label is ""


def test_defaults_depend_on_metric_and_tier() -> None:
    rate = one_rule('tier = 1\nmetric = "error_rate"\nwhen = "> 5%"\n').rules[0]
    assert (rate.min_samples, rate.keep_firing_for, rate.for_, rate.over) == (
        50, timedelta(minutes=5), timedelta(0), timedelta(minutes=1))
    traffic = one_rule('tier = 2\nmetric = "request_rate"\nwhen = "< 1"\n').rules[0]
    assert (traffic.min_samples, traffic.keep_firing_for) == (0, timedelta(0))
    latency = one_rule('tier = 3\nmetric = "latency_p99"\nwhen = "> 30s"\n').rules[0]
    assert latency.min_samples == 20
    assert latency.on_missing_data == "ignore"


def test_tier_timing_defaults_and_overrides() -> None:
    config = parse_rules(CONSOLE_TIERS.replace('[tiers.2]\n',
                                               '[tiers.2]\nrepeat_interval = "1h"\n'))
    assert config.tiers[1].repeat_interval == timedelta(minutes=30)
    assert config.tiers[2].repeat_interval == timedelta(hours=1)
    assert config.tiers[2].group_wait == timedelta(minutes=1)
    assert config.tiers[3].repeat_interval == timedelta(hours=24)
    assert config.tiers[1].group_by == ("rule",)


def test_receivers_parse_into_their_kinds() -> None:
    assert isinstance(SHIPPED.receivers["slack"], SlackReceiver)
    assert SHIPPED.receivers["slack"].webhook_url_env == "SPANWATCH_SLACK_WEBHOOK_URL"
    digest = SHIPPED.receivers["digest"]
    assert isinstance(digest, DigestReceiver)
    assert (digest.send_at, digest.timezone, digest.deliver_to) == (time(9), "Europe/Berlin",
                                                                   "slack")
    assert list(SHIPPED.receivers_of(1)) == ["pagerduty", "slack"]


def test_models_are_immutable() -> None:
    rule = SHIPPED.rules[0]
    with pytest.raises(ValidationError):
        rule.tier = 3


def test_when_rules_build_a_threshold_detector() -> None:
    rule = SHIPPED.rule("error-rate-high")
    assert rule.detector_params() == {"kind": "threshold", "op": ">", "value": 0.05}
    score = rule.build_detector().score(0.08, datetime(2026, 1, 5, tzinfo=UTC), n=100)
    assert score is not None and score.is_anomalous


def test_every_shipped_rule_builds_its_detector() -> None:
    for rule in SHIPPED.rules:
        assert rule.build_detector() is not None, rule.name


def test_render_fills_placeholders_and_absent_values() -> None:
    rule = SHIPPED.rule("error-rate-high")
    labels = {"service": "checkout", "model": "gpt-4o", "provider": "openai"}
    assert render(rule.summary, rule=rule, labels=labels, value=0.083, threshold=0.05) == (
        "checkout / gpt-4o: 8.3% of model calls fail (limit 5%)")
    assert render("{value:.1%} vs {threshold}", rule=rule, labels={}, value=None) == "n/a vs n/a"


def test_alert_and_match_labels() -> None:
    rule = one_rule('tier = 2\nmetric = "error_rate"\nwhen = "> 5%"\ngroup_by = ["service"]\n'
                    'labels = { team = "ml" }\n').rules[0]
    assert rule.alert_labels({"service": "checkout"}) == (("service", "checkout"),
                                                          ("team", "ml"))
    assert rule.match_labels((("service", "checkout"),)) == {
        "service": "checkout", "team": "ml", "rule": "r", "tier": "2"}


def test_filters_select_records() -> None:
    rule = one_rule('tier = 2\nmetric = "error_rate"\nwhen = "> 5%"\n'
                    'filters = ["service=checkout", "model=~gpt-4.*"]\n').rules[0]
    assert rule.selects({"service": "checkout", "model": "gpt-4o-mini"})
    assert not rule.selects({"service": "checkout", "model": "claude-3-5-sonnet"})
    assert not rule.selects({"model": "gpt-4o"})


def test_default_inhibition_tier_1_mutes_tier_2_and_3_of_its_series() -> None:
    (inhibit,) = DEFAULT_INHIBIT
    source = {"rule": "error-rate-high", "tier": "1", "service": "checkout", "model": "gpt-4o"}
    narrower = {"rule": "latency-p99-high", "tier": "2", "service": "checkout",
                "model": "gpt-4o", "endpoint": "/chat"}
    assert inhibit.inhibits(source, narrower)
    assert inhibit.inhibits(source, {"tier": "3", "service": "checkout"})
    assert not inhibit.inhibits(source, {**narrower, "service": "search"})
    assert not inhibit.inhibits(source, {**narrower, "model": "gpt-4o-mini"})
    assert not inhibit.inhibits(source, {**narrower, "tier": "1"})
    assert not inhibit.inhibits(source, {"rule": "x", "tier": "2", "provider": "openai"})


def event(rule: str, tier: int, labels: dict[str, str]) -> AlertEvent:
    pairs = tuple(sorted(labels.items()))
    evaluation = Evaluation(rule=rule, tier=tier, labels=pairs, at_unix_ns=0, window_s=60.0,
                            is_breach=True, value=1.0)
    return AlertEvent(fingerprint=evaluation.fingerprint, rule=rule, tier=tier, labels=pairs,
                      state="firing", previous="pending", at_unix_ns=0, started_at_unix_ns=0,
                      evaluation=evaluation)


def test_shipped_provider_alert_mutes_per_app_alerts_of_that_provider() -> None:
    provider = event("provider-error-rate-high", 1, {"provider": "openai"})
    app = event("error-rate-high", 1, {"service": "checkout", "provider": "openai",
                                       "model": "gpt-4o"})
    elsewhere = event("error-rate-high", 1, {"service": "checkout", "provider": "anthropic",
                                             "model": "claude"})
    muting = [i for i in SHIPPED.inhibit if i.is_inhibiting(provider, app)]
    assert len(muting) == 1 and muting[0].equal == ("provider",)
    assert not any(i.is_inhibiting(provider, elsewhere) for i in SHIPPED.inhibit)
    assert not any(i.is_inhibiting(provider, provider) for i in SHIPPED.inhibit)
    assert not any(i.is_inhibiting(app, provider) for i in SHIPPED.inhibit)


# Every alert of DESIGN.md ("Alert tiers in the reference" and the metrics table), as
# (rule, tier, metric, "when" text or detector kind).
REFERENCE = [
    ("error-rate-high", 1, "error_rate", "> 5%"),
    ("ttft-p99-high", 1, "ttft_p99", "> 60s"),
    ("safety-eval-failure", 1, "safety_failures", "> 0"),
    ("eval-score-drop", 1, "quality_score", "drift"),
    ("latency-p99-critical", 1, "latency_p99", "> 60s"),
    ("latency-p99-high", 2, "latency_p99", "> 30s"),
    ("cost-per-request-spike", 2, "cost_per_request", "ratio"),
    ("quality-score-drop", 2, "quality_score", "drift"),
    ("spend-quota-80pct", 2, "total_cost_usd", "> 80%"),
    ("request-quota-80pct", 2, "request_rate", "> 80%"),
    ("prompt-version-worse", 2, "quality_score", "two_sample"),
    ("session-cost-outlier", 2, "cost_per_session_max", "percentile"),
    ("output-speed-degraded", 2, "output_tokens_per_s", "drift"),
    ("input-tokens-outlier", 2, "input_tokens_p99", "percentile"),
    ("output-tokens-outlier", 2, "output_tokens_p99", "percentile"),
    ("negative-feedback-high", 2, "negative_feedback_rate", "> 15%"),
    ("regeneration-rate-high", 2, "regeneration_rate", "> 10%"),
    ("refusal-rate-spike", 2, "refusal_rate", "drift"),
    ("heuristic-pass-rate-low", 2, "heuristic_pass_rate", "< 95%"),
    ("groundedness-low", 2, "groundedness", "< 0.80"),
    ("truncation-share-high", 2, "finish_reason_length_share", "> 20%"),
    ("request-rate-anomaly", 2, "request_rate", "zscore"),
    ("unknown-cost-spans", 2, "unknown_cost_spans", "> 0"),
    ("ttft-p50-target", 3, "ttft_p50", "> 500ms"),
    ("ttft-p99-target", 3, "ttft_p99", "> 5s"),
    ("cache-hit-rate-low", 3, "cache_hit_rate", "< 30%"),
    ("retrieval-latency-trend", 3, "retrieval_latency_p95", "trend"),
    ("new-user-segment", 3, "request_count", "novelty"),
    ("prompt-experiment-significant", 3, "quality_score", "two_sample"),
    ("session-cost-trend", 3, "cost_per_session", "trend"),
]


@pytest.mark.parametrize(("name", "tier", "metric", "condition"), REFERENCE)
def test_shipped_rules_cover_the_reference(name: str, tier: int, metric: str,
                                           condition: str) -> None:
    rule = SHIPPED.rule(name)
    shown = rule.when.text if rule.when else str(rule.detector_params()["kind"])
    assert (rule.tier, rule.metric, shown) == (tier, metric, condition)


def test_reference_table_lists_every_shipped_rule_but_the_provider_one() -> None:
    assert {r.name for r in SHIPPED.rules} - {name for name, *_ in REFERENCE} == {
        "provider-error-rate-high"}


def test_safety_pages_at_once() -> None:
    rule = SHIPPED.rule("safety-eval-failure")
    assert (rule.for_, rule.min_samples, rule.tier) == (timedelta(0), 1, 1)


def test_quota_rules_see_the_share_consumed() -> None:
    rule = SHIPPED.rule("spend-quota-80pct")
    assert rule.value_of(850.0) == 0.85
    assert SHIPPED.rule("error-rate-high").value_of(0.07) == 0.07


def test_the_inhibitor_takes_the_configured_rules() -> None:
    from rules.inhibition import Inhibitor  # noqa: PLC0415

    inhibitor = Inhibitor(SHIPPED.inhibit)  # type: ignore[arg-type]  # duck-typed InhibitRule
    provider = event("provider-error-rate-high", 1, {"provider": "openai"})
    app = event("error-rate-high", 1, {"service": "checkout", "provider": "openai",
                                       "model": "gpt-4o"})
    latency = event("latency-p99-high", 2, {"service": "checkout", "provider": "openai",
                                            "model": "gpt-4o"})
    inhibitor.update(provider)
    assert inhibitor.suppressed_by(app) == (provider.fingerprint,)
    inhibitor.update(app)
    assert set(inhibitor.suppressed_by(latency)) == {provider.fingerprint, app.fingerprint}
