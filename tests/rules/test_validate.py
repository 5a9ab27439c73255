"""alerts.toml validation: one fixture per kind of mistake in tests/data/bad_alerts, each with
its whole message; every error of a file in line order; the shipped file passes; `spanwatch
check` exits 0/2 with the errors on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.load import RulesError, load_rules, parse_rules
from rules.validate import check_document, section
from spanwatch.cli import main

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "bad_alerts"
SHIPPED = ROOT / "alerts.toml"
LABELS = ("service, model, operation, provider, prompt_template_version, endpoint, "
          "environment, app_version, model_version, user_segment, kind")
RULE_KEYS = ("name, tier, metric, group_by, filters, over, when, detector, across, quota, "
             "min_samples, for, keep_firing_for, summary, runbook, labels, rebaseline_on, "
             "on_missing_data")

EXPECTED: dict[str, list[str]] = {
    "unknown_metric": [
        '16: rules[0] "error-rate-high": metric "eror_rate" is unknown; did you mean '
        'error_rate?'],
    "unknown_label": [
        f'17: rules[0] "error-rate-high": group_by label "modle" is unknown; expected one of '
        f'{LABELS}; did you mean model?'],
    "bad_duration": [
        '17: rules[0] "error-rate-high": over "5 mins" is not a duration; expected e.g. 30s, '
        '5m, 1h30m, 7d'],
    "detector_param_out_of_range": [
        '18: rules[0] "cost-spike": detector.factor is 0.5; expected > 1.0 and <= 1000000.0'],
    "unknown_detector_kind": [
        '17: rules[0] "cost-spike": detector.kind "ratoi" is unknown; expected one of drift, '
        'novelty, percentile, ratio, threshold, trend, two_sample, zscore; did you mean '
        'ratio?'],
    "receiver_not_defined": [
        '11: tiers.2: receivers[0] "slack-alerts" is not defined; defined receivers are '
        'pagerduty, slack'],
    "duplicate_rule_names": [
        '21: rules[1] "error-rate-high": name "error-rate-high" is already used by rules[0]; '
        'rule names must be unique'],
    "unknown_key": [
        f'17: rules[0] "error-rate-high": unknown key "group-by"; expected one of '
        f'{RULE_KEYS}; did you mean group_by?'],
    "when_and_detector": [
        '18: rules[0] "cost-spike": set either when or detector, not both'],
    "bad_placeholder": [
        '19: rules[0] "error-rate-high": runbook placeholder {labels.sevice} is unknown; '
        'expected {rule}, {tier}, {metric}, {over}, {value}, {detail}, {threshold}, '
        '{labels.service}; did you mean {labels.service}?'],
    "bad_timezone": [
        '8: receivers.digest: timezone "Europe/Berln" is not an IANA time zone; expected '
        'e.g. UTC, Europe/Berlin, America/New_York; did you mean Europe/Berlin?'],
    "toml_syntax_error": [
        "14: invalid TOML: Illegal character '\\n' (column 24); is a string missing its "
        "closing quote?"],
}


def errors_of(path: Path) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    return caught.value.errors


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_kind_of_mistake_has_its_message(name: str) -> None:
    path = BAD / f"{name}.toml"
    assert errors_of(path) == [f"{path}:{line}" for line in EXPECTED[name]]


def test_every_fixture_is_covered() -> None:
    assert {p.stem for p in BAD.glob("*.toml")} == {*EXPECTED, "several_errors"}


def test_a_file_with_several_mistakes_reports_all_in_line_order() -> None:
    path = BAD / "several_errors.toml"
    assert errors_of(path) == [f"{path}:{line}" for line in [
        '4: receivers.slack: unknown key "webhook_url"; expected one of url, kind, '
        'webhook_url_env, token_env, channel; secrets are read from the environment: set '
        'webhook_url_env to the name of the variable that holds it',
        '8: receivers.digest: send_at is "9am"; expected a time of day "HH:MM", e.g. "09:00"',
        '9: receivers.digest: deliver_to "slak" is not defined; defined receivers are digest, '
        'slack; did you mean slack?',
        '12: tiers.1: receivers[0] "pagerduty" is not defined; defined receivers are digest, '
        'slack',
        '15: tiers.2: repeat_interval "4 hours" is not a duration; expected e.g. 30s, 5m, '
        '1h30m, 7d',
        f'25: rules[0] "error-rate-high": group_by label "modle" is unknown; expected one of '
        f'{LABELS}; did you mean model?',
        '27: rules[0] "error-rate-high": over "90s" is not a whole number of minutes; metrics '
        'are kept in 1-minute buckets, so use e.g. 1m, 5m, 1h',
        '28: rules[0] "error-rate-high": when "> 5" is outside 0 to 1, but error_rate is a '
        'ratio between 0 and 1; did you mean "> 5%"?',
        '36: rules[1] "cost-spike": tier is 4; expected 1, 2 or 3',
        '37: rules[1] "cost-spike": metric "cost_per_reqest" is unknown; did you mean '
        'cost_per_request?',
        '38: rules[1] "cost-spike": detector.sigma is 50; expected >= 0.5 and <= 20',
        '40: rules[1] "cost-spike": runbook placeholder {labels.service} is not a label of '
        'this alert; add service to group_by or labels',
        '40: rules[1] "cost-spike": runbook placeholder {threshold} has no value in a detector '
        'rule; use {baseline}',
        '43: rules[2] "cost-spike": name "cost-spike" is already used by rules[1]; rule names '
        'must be unique',
        '46: rules[2] "cost-spike": when "> 5%" is a percentage, but ttft_p99 is measured in '
        's; write a plain number',
    ]]


HEAD = """\
[receivers.slack]
kind = "slack"
[tiers.1]
receivers = ["slack"]
[tiers.2]
receivers = ["slack"]
[tiers.3]
receivers = ["slack"]
"""


def rule_errors(rule: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(HEAD + "[[rules]]\n" + rule)
    return caught.value.errors


@pytest.mark.parametrize(("rule", "message"), [
    ('name = "x"\ntier = 2\nmetric = "quality_score"\nrunbook = "r"\n'
     'detector = { kind = "two_sample" }\n',
     'alerts.toml:14: rules[0] "x": detector.kind "two_sample" compares the values of a label; '
     'set across, e.g. across = "prompt_template_version"'),
    ('name = "x"\ntier = 2\nmetric = "error_rate"\nrunbook = "r"\nwhen = "> 1%"\n'
     'rebaseline_on = ["model"]\n',
     'alerts.toml:15: rules[0] "x": rebaseline_on needs a detector; a fixed when threshold has '
     'no baseline'),
    ('name = "x"\ntier = 2\nmetric = "error_rate"\nrunbook = "r"\n'
     'detector = { kind = "ratio", fator = 3 }\n',
     'alerts.toml:14: rules[0] "x": detector: parameter "fator" is unknown; expected one of '
     'baseline, cooldown, direction, factor, learn_anomalies, min_coverage, min_samples; did '
     'you mean factor?'),
    ('name = "x"\ntier = 2\nmetric = "error_rate"\nrunbook = "r"\n',
     'alerts.toml:10: rules[0] "x": needs a condition: set when (e.g. when = "> 0.05") or '
     'detector (e.g. detector = { kind = "zscore" })'),
    ('name = "x"\ntier = 2\nmetric = "error_rate"\nwhen = "> 1%"\n',
     'alerts.toml:9: rules[0] "x": runbook is required'),
    ('name = "x"\ntier = 2\nmetric = "error_rate"\nwhen = "= 1%"\nrunbook = "r"\n',
     'alerts.toml:13: rules[0] "x": when "= 1%" is not a condition; expected an operator (>, '
     '>=, <, <=) and a number, e.g. "> 0.05", "> 5%", "> 60s"'),
    ('name = "x"\ntier = 2\nmetric = "error_rate"\nwhen = "> 1%"\nrunbook = "r"\n'
     'filters = { service = "checkout", model = "~gpt-4(" }\n',
     'alerts.toml:15: rules[0] "x": filters regex "gpt-4(" does not compile: missing ), '
     'unterminated subpattern at position 5'),
    ('name = "x"\ntier = 2\nmetric = "error_rate"\nwhen = "> 1%"\nrunbook = "r"\n'
     'labels = { service = "x" }\n',
     'alerts.toml:15: rules[0] "x": labels.service would hide the service label every alert '
     'carries; choose another name'),
])
def test_rule_mistakes(rule: str, message: str) -> None:
    assert rule_errors(rule) == [message]


def test_secrets_in_the_file_are_rejected_with_the_fix() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules('[receivers.pd]\nkind = "pagerduty"\nrouting_key = "R0123"\n'
                    '[tiers.1]\nreceivers = ["pd"]\n')
    assert caught.value.errors == [
        'alerts.toml:3: receivers.pd: unknown key "routing_key"; expected one of url, kind, '
        'routing_key_env; secrets are read from the environment: set routing_key_env to the '
        'name of the variable that holds it']


def test_an_unreadable_file_is_one_error(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "missing.toml") == [
        f"{tmp_path / 'missing.toml'}: cannot read the rules file: No such file or directory"]


def test_the_shipped_alerts_toml_is_valid() -> None:
    config = load_rules(SHIPPED)
    assert all(rule.runbook for rule in config.rules)
    assert {rule.tier for rule in config.rules} == {1, 2, 3}


def test_check_exits_0_for_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{SHIPPED}: ok, ")
    assert err == ""


def test_check_exits_2_with_every_error_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "several_errors.toml"
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[:-1] == errors_of(path)
    assert lines[-1] == f"spanwatch check: {path} is invalid (15 errors)"


def test_check_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "unknown_metric.toml"
    assert main(["check", "--format", "json", str(path)]) == 2
    out, _ = capsys.readouterr()
    assert json.loads(out) == {"file": str(path), "is_valid": False,
                               "errors": errors_of(path)}


def test_check_reads_the_file_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SPANWATCH_RULES_FILE", str(BAD / "bad_duration.toml"))
    assert main(["check"]) == 2
    assert "bad_duration.toml:17:" in capsys.readouterr().err


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
    | st.sampled_from(["", "5m", "> 5%", "service", "~x(", "kind", "zscore", "{value}",
                       "{labels.service}", "slack"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["kind", "sigma", "factor", "service"]), inner,
                      max_size=3),
    max_leaves=6)
_RULE_KEYS = ["name", "tier", "metric", "group_by", "filters", "over", "when", "detector",
              "across", "quota", "min_samples", "for", "keep_firing_for", "summary", "runbook",
              "labels", "rebaseline_on", "on_missing_data", "typo"]


@settings(max_examples=300, deadline=None)
@given(rule=st.dictionaries(st.sampled_from(_RULE_KEYS), _VALUES, max_size=8),
       receivers=_VALUES, tiers=_VALUES, inhibit=_VALUES)
def test_any_document_gives_problems_or_a_config_never_a_crash(
        rule: dict[str, object], receivers: object, tiers: object, inhibit: object) -> None:
    doc = {"receivers": receivers, "tiers": tiers, "rules": [rule], "inhibit": inhibit}
    config, problems = check_document(doc)
    assert (config is None) == bool(problems)
    for problem in problems:
        section(problem.loc, doc)
