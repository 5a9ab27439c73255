"""`RuleEvaluator`'s per-rule look-ups (`_ready`) are rebuilt, never pickled: snapshots hold
what they held before they existed, and a restored evaluator has the same ones."""

from __future__ import annotations

import pickle
from pathlib import Path

from metrics.bucket import Bucket
from metrics.catalog import compute
from rules.evaluate import RuleEvaluator
from rules.load import parse_rules

ALERTS = Path(__file__).resolve().parents[2] / "alerts.toml"


def test_ready_rules_are_not_pickled_and_come_back_the_same() -> None:
    evaluator = RuleEvaluator(parse_rules(ALERTS.read_text()))
    state = evaluator.__getstate__()
    assert "_ready" not in state
    assert "_memos" not in state
    restored = pickle.loads(pickle.dumps(evaluator))  # noqa: S301 - ours
    assert restored._ready == evaluator._ready
    bucket = Bucket()
    for ready in evaluator._ready:
        rule = ready.compiled.rule
        assert ready.compiled.rule is evaluator._compiled[evaluator._ready.index(ready)].rule
        assert ready.window_s == rule.over.total_seconds()
        assert ready.metric(bucket, ready.minutes) == compute(rule.metric, bucket, rule.over)
