"""Evaluations carry each rule's alert labels: the series labels plus the rule's own `labels`,
worked out once per series for the rules without labels of their own."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute, WindowConfig
from rules.evaluate import RuleEvaluator
from rules.families import families
from rules.load import parse_rules
from rules.records import Evaluation, Labels
from tests.fakes.traffic import HOUR_NS, MAX_SPILL_NS, MINUTE_NS, START_NS, TrafficGenerator

EXTRA = '''
[[rules]]
name = "x-errors-labelled"
tier = 3
runbook = "https://runbooks.example/x-errors-labelled"
metric = "error_rate"
group_by = ["service", "endpoint"]
over = "5m"
when = "> 2%"
labels = { team = "payments", owner = "alice" }

[[rules]]
name = "x-errors-plain"
tier = 3
runbook = "https://runbooks.example/x-errors-plain"
metric = "error_rate"
group_by = ["service", "endpoint"]
over = "5m"
when = "> 2%"
'''
START = START_NS + 13 * HOUR_NS


def _evaluate(minutes: int) -> list[Evaluation]:
    text = Path(__file__).resolve().parents[2].joinpath("alerts.toml").read_text()
    config = parse_rules(text + EXTRA)
    keys_of = [family.key_of for family in families(config)]
    shard = ShardWindows(WindowConfig())
    evaluator = RuleEvaluator(config)
    out: list[Evaluation] = []
    for minute, records in TrafficGenerator(seed=5).minutes(START, START + minutes * MINUTE_NS):
        for record in records:
            for key_of in keys_of:
                key = key_of(record)
                if key is not None:
                    shard.add(key, record)
        by_minute: dict[int, list[ClosedMinute]] = {}
        for closed in shard.close_until(minute - MAX_SPILL_NS):
            by_minute.setdefault(closed.minute_start_unix_ns, []).append(closed)
        for start in sorted(by_minute):
            out.extend(evaluator.evaluate(by_minute[start], shard))
    return out


def test_rule_labels_reach_only_that_rules_evaluations() -> None:
    evaluations = _evaluate(12)
    by_rule: dict[str, dict[int, list[Labels]]] = defaultdict(lambda: defaultdict(list))
    for evaluation in evaluations:
        by_rule[evaluation.rule][evaluation.at_unix_ns].append(evaluation.labels)
    plain, labelled = by_rule["x-errors-plain"], by_rule["x-errors-labelled"]
    assert plain and plain.keys() == labelled.keys()
    for at, series in plain.items():
        assert sorted(labelled[at]) == sorted(
            tuple(sorted({**dict(labels), "team": "payments", "owner": "alice"}.items()))
            for labels in series)
        assert all(dict(labels).keys() == {"service", "endpoint"} for labels in series)
    # Every other rule of the family gives a series exactly the labels the plain rule gives it.
    latency = by_rule["latency-p99-critical"]
    assert latency
    for at, series in latency.items():
        assert sorted(series) == sorted(plain[at])
