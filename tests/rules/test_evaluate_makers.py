"""`RuleEvaluator` makes a series' new detector with its rule's `detectors.maker` (the detector
table read once per rule, not once per series): the same evaluations as building each one from
the table, makers never pickled, and rebuilt when the rules change."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import rules.evaluate as evaluate_module
from detectors import Detector, build, maker
from rules.evaluate import RuleEvaluator
from rules.load import parse_rules
from rules.records import Evaluation
from tests.fakes.shard_run import ShardRun
from tests.fakes.traffic import MINUTE_NS, START_NS, TrafficGenerator

ALERTS = Path(__file__).resolve().parents[2] / "alerts.toml"
MINUTES = 20


def _run(monkeypatch: pytest.MonkeyPatch,
         make: Callable[[Mapping[str, Any]], Callable[[], Detector[Any]]]
         ) -> tuple[list[Evaluation], RuleEvaluator, list[Mapping[str, Any]]]:
    """Evaluations of every shipped rule over a few minutes of traffic, with `make` as the
    evaluator's maker; also the evaluator and the tables `make` was called with."""
    tables: list[Mapping[str, Any]] = []

    def counting(params: Mapping[str, Any]) -> Callable[[], Detector[Any]]:
        tables.append(params)
        return make(params)

    run = ShardRun(parse_rules(ALERTS.read_text()))
    traffic = TrafficGenerator(seed=5)
    out: list[Evaluation] = []
    with monkeypatch.context() as patch:
        patch.setattr(evaluate_module, "maker", counting)
        for minute, records in traffic.minutes(START_NS, START_NS + MINUTES * MINUTE_NS):
            out.extend(run.minute(minute, records))
    return out, run.evaluator, tables


def test_detectors_from_makers_evaluate_as_detectors_built_from_the_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made, evaluator, tables = _run(monkeypatch, maker)
    built, _, _ = _run(monkeypatch, lambda params: lambda: build(params))
    assert len(made) > 500
    assert made == built
    # one maker per rule with detectors, many more detectors
    names = {name for name, _ in evaluator._detectors}
    assert len(tables) == len(names) == len(evaluator._makers)
    assert evaluator.detector_count > 2 * len(tables)


def test_makers_are_not_pickled_and_start_over_on_reload(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, evaluator, _ = _run(monkeypatch, maker)
    assert evaluator._makers
    assert "_makers" not in evaluator.__getstate__()
    restored = pickle.loads(pickle.dumps(evaluator))  # noqa: S301 - ours
    assert restored._makers == {}
    config = parse_rules(ALERTS.read_text())
    name, _ = next(iter(evaluator._detectors))
    rule = next(r for r in config.rules if r.name == name)
    changed = rule.model_copy(update={"min_samples": rule.min_samples + 1})
    evaluator.reconfigure(config.model_copy(update={"rules": (changed,)}))
    assert evaluator._makers == {}
