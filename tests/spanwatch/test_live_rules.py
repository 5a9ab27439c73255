"""Hot reload in the running flow: a valid change applies, a broken file keeps the old rules,
and detectors of unchanged rules keep their baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rules.evaluate import RuleEvaluator
from rules.load import parse_rules
from spanwatch.live_rules import LiveRules

BASE = """
[receivers.console]
kind = "console"
[tiers.1]
receivers = ["console"]
[[rules]]
name = "errors"
tier = 1
metric = "error_rate"
when = "> 5%"
runbook = "look"
[[rules]]
name = "rate"
tier = 1
metric = "request_rate"
detector = { kind = "zscore" }
runbook = "look"
"""


def test_valid_change_applies_and_broken_file_keeps_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(BASE)
    live = LiveRules(path, interval=timedelta(0))
    first = live()
    assert [r.name for r in first.rules] == ["errors", "rate"]
    assert live() is first  # unchanged file: same object, nothing re-applied

    path.write_text(BASE.replace('when = "> 5%"', 'when = "> 5 %%"'))
    assert live() is first  # invalid: logged, old rules kept

    path.write_text(BASE.replace('when = "> 5%"', 'when = "> 10%"'))
    second = live()
    assert second is not first
    condition = second.rule("errors").when
    assert condition is not None
    assert condition.threshold == 0.1


def test_reconfigure_keeps_baselines_of_unchanged_rules() -> None:
    config = parse_rules(BASE)
    evaluator = RuleEvaluator(config)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for rule in config.rules:  # create one detector per rule for one series
        evaluator._detector(rule, ()).learn(1.0, at)
    kept = evaluator._detectors[("rate", ())]
    dropped = evaluator.reconfigure(parse_rules(BASE.replace('"> 5%"', '"> 7%"')))
    assert dropped == {"errors"}
    assert ("errors", ()) not in evaluator._detectors
    assert evaluator._detectors[("rate", ())] is kept
