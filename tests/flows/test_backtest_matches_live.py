"""`backtest` over recorded traffic gives the same alert transitions as the live flow over Kafka
on the same spans (issue 4), with the shipped alerts.toml.

The recording holds three hours of low-rate traffic of two services with three incidents: an
error burst on one model of each service, then a provider-wide outage (which pages on the provider
and mutes the per-app pages). The same messages go to a 2-partition topic, and the live flow reads
them with its default Kafka source (`tail=False`, batches of up to 1000 messages: each spans hours
of event time, as when catching up a backlog). A week does not fit the time budget: with the
shipped rules the flow costs about 0.12 CPU-s per event-time minute at this rate (about 150
spans/s; 1400 spans/s at 200 spans a minute), so a week would take some 20 CPU-minutes per run.
`-s` prints the measured times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from confluent_kafka import Producer

from flows.pipeline import FlowOptions, FlowSinks, build_flow, partition_key
from ingest.recorded import write_proto_messages
from rules.config import RulesConfig
from rules.load import load_rules
from rules.records import AlertEvent
from spanwatch.backtest import backtest, transition_json
from spanwatch.flow_runtime import Collected, discard
from spanwatch.settings import KafkaSettings, Settings
from tests.broker import KafkaUnderTest
from tests.fakes.skewed_traffic import (
    MODELS,
    SERVICES,
    Incident,
    incident_traffic,
    span_count,
)

pytestmark = pytest.mark.kafka

START_NS = 1_764_201_600_000_000_000  # 2025-11-27T00:00:00Z
MINUTES = 3 * 60
CALLS_PER_MINUTE = 2
PARTITIONS = 2
INCIDENTS = (
    Incident(SERVICES[0], MODELS[0], start_minute=20, minutes=20, calls_per_minute=15,
             error_share=0.5),
    Incident(SERVICES[1], MODELS[1], start_minute=70, minutes=20, calls_per_minute=15,
             error_share=0.5),
    # Provider-wide: every service and model fails.
    *(Incident(service, model, start_minute=120, minutes=15, calls_per_minute=12,
               error_share=0.6) for service in SERVICES for model in MODELS),
)
ROOT_DIR = Path(__file__).resolve().parents[2]


def transition(event: AlertEvent) -> tuple[Any, ...]:
    """(time, rule, state, labels, value), as `spanwatch backtest` prints them."""
    doc = transition_json(event)
    return (doc["time"], doc["rule"], doc["state"], tuple(sorted(doc["labels"].items())),
            doc["value"])


def in_order(events: Sequence[AlertEvent]) -> list[AlertEvent]:
    return sorted(events, key=lambda e: (e.at_unix_ns, e.rule, e.fingerprint, e.state,
                                         e.suppressed_by))


def live(settings: Settings, rules: RulesConfig, messages: list[bytes],
         kafka: KafkaUnderTest) -> list[AlertEvent]:
    """The live flow over a topic holding `messages` (spread over its partitions)."""
    topic = settings.kafka.spans_topic
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
    for index, value in enumerate(messages):
        producer.produce(topic, value=value, partition=index % PARTITIONS)
    assert producer.flush(30) == 0
    collected = Collected()
    sinks = FlowSinks(groups=discard(), events=collected.sink("events"), dead_letters=discard())
    options = FlowOptions(partitions=tuple(partition_key(topic, p) for p in range(PARTITIONS)),
                          tail=False)
    run_main(build_flow(settings, rules, sinks, options))  # type: ignore[no-untyped-call]
    return collected.events


def test_backtest_gives_the_live_flows_transitions(
        kafka: KafkaUnderTest, make_topic: Callable[..., str], tmp_path: Path) -> None:
    messages = incident_traffic(START_NS, MINUTES, CALLS_PER_MINUTE, INCIDENTS)
    spans = span_count(messages)
    recording = tmp_path / "spans.otlp.pb"
    write_proto_messages(recording, messages)
    settings = Settings(kafka=KafkaSettings(
        bootstrap_servers=kafka.bootstrap, spans_topic=make_topic(partitions=PARTITIONS),
        dead_letter_topic=make_topic(), start_from="beginning",
        fetch_wait_max_ms=10 if kafka.is_embedded else None))
    rules = load_rules(ROOT_DIR / "alerts.toml")

    started = time.monotonic()
    recorded = backtest([recording], rules, settings)
    backtest_s = time.monotonic() - started
    started = time.monotonic()
    streamed = live(settings, rules, messages, kafka)
    live_s = time.monotonic() - started
    print(f"\n{spans} spans, {MINUTES} minutes: backtest {backtest_s:.1f} s, live {live_s:.1f} s")

    expected = [transition(e) for e in in_order(recorded)]
    assert expected, "the incidents raised no alert"
    pages = [(rule, state, dict(labels).get("service"), dict(labels).get("model"))
             for _, rule, state, labels, _ in expected]
    for incident in INCIDENTS[:2]:  # each single-service burst pages and resolves
        for state in ("firing", "resolved"):
            assert ("error-rate-high", state, incident.service, incident.model) in pages
    assert ("provider-error-rate-high", "resolved", None, None) in pages
    assert any(e.suppressed_by for e in recorded), "the outage muted no per-app alert"
    assert [transition(e) for e in in_order(streamed)] == expected
    assert [transition_json(e) for e in in_order(streamed)] \
        == [transition_json(e) for e in in_order(recorded)]
