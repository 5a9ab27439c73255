"""Evaluations carry each rule's alert labels: the series labels plus the rule's own `labels`,
worked out once per series for the rules without labels of their own."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rules.load import parse_rules
from rules.records import Evaluation, Labels
from tests.fakes.shard_run import ShardRun
from tests.fakes.traffic import HOUR_NS, MINUTE_NS, START_NS, TrafficGenerator

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
    run = ShardRun(parse_rules(text + EXTRA))
    traffic = TrafficGenerator(seed=5).minutes(START, START + minutes * MINUTE_NS)
    return [evaluation for minute, records in traffic
            for evaluation in run.minute(minute, records)]


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
