"""The whole ingest flow over a real broker: SDK spans published in both collector encodings
come out as assembled LLMSpans; bad messages land in the dead-letter topic with the reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from bytewax.testing import run_main
from confluent_kafka import Consumer, Producer, TopicPartition

from flows.pipeline import FlowOptions, FlowSinks, build_flow, partition_key
from flows.sinks import CallbackSink
from ingest.assembly import Record
from ingest.span import LLMSpan, TraceContext
from rules.config import RulesConfig
from spanwatch.settings import KafkaSettings, Settings
from tests.broker import KafkaUnderTest
from tests.fakes.genai_trace import chat_trace
from tests.fakes.otel_spans import T0_NS, SpanRecorder, otlp_json, otlp_proto

pytestmark = pytest.mark.kafka
MINUTE_NS = 60 * 1_000_000_000


def _settings(kafka: KafkaUnderTest, topic: str, dlq: str) -> Settings:
    return Settings(kafka=KafkaSettings(
        bootstrap_servers=kafka.bootstrap, spans_topic=topic, dead_letter_topic=dlq,
        start_from="beginning",
        fetch_wait_max_ms=10 if kafka.is_embedded else None))


def _run(settings: Settings, partitions: int) -> list[Record]:
    records: list[Record] = []
    lock = threading.Lock()

    def write(batch: list[Record]) -> None:
        with lock:
            records.extend(batch)

    topic = settings.kafka.spans_topic
    sinks = FlowSinks(groups=CallbackSink(lambda _: None), records=CallbackSink(write))
    options = FlowOptions(partitions=tuple(partition_key(topic, p) for p in range(partitions)),
                          tail=False)
    no_rules = RulesConfig(receivers={}, tiers={})
    run_main(build_flow(settings, no_rules, sinks, options))  # type: ignore[no-untyped-call]
    return records


def _read_all(kafka: KafkaUnderTest, topic: str, expected: int,
              deadline_s: float = 30) -> list[tuple[bytes | None, dict[str, bytes]]]:
    """Every message of `topic` (value, headers), read with assign() until `expected` arrive."""
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "t",
                         "enable.auto.commit": False, **kafka.consumer_tuning()})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[tuple[bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + deadline_s
    while len(out) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            headers = message.headers() or []
            pairs = headers.items() if isinstance(headers, dict) else headers
            out.append((message.value(),
                        {k: v for k, v in pairs if isinstance(v, bytes)}))
    consumer.close()
    return out


def test_spans_in_both_encodings_come_out_assembled(
        kafka: KafkaUnderTest, make_topic: Callable[..., str]) -> None:
    topic, dlq = make_topic(partitions=2), make_topic()
    recorder = SpanRecorder(service="support-bot")
    traces = [chat_trace(recorder, T0_NS + i * MINUTE_NS, prompt_version=f"v{i % 2}")
              for i in range(6)]
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i, trace in enumerate(traces):
        encode = otlp_proto if i % 2 == 0 else otlp_json
        # partition_traces_by_id style: keyed by trace id, child and root in separate messages
        # so the root really arrives after its child.
        for span in trace.spans:
            producer.produce(topic, key=trace.trace_id.encode(), value=encode([span]))
    assert producer.flush(10) == 0

    records = _run(_settings(kafka, topic, dlq), partitions=2)

    llm_spans = {r.trace_id: r for r in records if isinstance(r, LLMSpan) and r.kind == "llm"}
    assert len(records) == 12
    assert set(llm_spans) == {t.trace_id for t in traces}
    for i, trace in enumerate(traces):
        llm = llm_spans[trace.trace_id]
        assert llm.span_id == trace.llm_span_id
        assert llm.context == TraceContext(
            service="support-bot", app_version="1.4.2", prompt_template_version=f"v{i % 2}",
            session_id="sess-42", user_id="user-7", endpoint="/chat")
        assert llm.end_unix_ns == T0_NS + i * MINUTE_NS + 1_650_000_000
        assert (llm.input_tokens, llm.output_tokens, llm.time_to_first_token_s) == (
            1200, 300, 0.4)


def test_bad_messages_go_to_the_dead_letter_topic_and_the_flow_goes_on(
        kafka: KafkaUnderTest, make_topic: Callable[..., str]) -> None:
    topic, dlq = make_topic(), make_topic()
    good = chat_trace(SpanRecorder(), T0_NS)
    bad = [b"\xff\xfe not protobuf", b'{"resourceSpans": [{"scopeSpans": 7}]}', b"[1, 2]"]
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topic, value=bad[0])
    producer.produce(topic, value=otlp_proto(good.spans))
    producer.produce(topic, value=bad[1])
    producer.produce(topic, value=bad[2])
    assert producer.flush(10) == 0

    records = _run(_settings(kafka, topic, dlq), partitions=1)

    assert sorted(r.span_id for r in records if isinstance(r, LLMSpan)) == sorted(
        [good.llm_span_id, good.root_span_id])
    letters = _read_all(kafka, dlq, expected=3)
    assert [value for value, _ in letters] == bad  # original bytes, in order
    reasons = [headers["spanwatch.error"].decode() for _, headers in letters]
    assert "not an OTLP ExportTraceServiceRequest" in reasons[0]
    assert reasons[1] == ("malformed JSON message: resourceSpans[0].scopeSpans: must be a list, "
                          "got int")
    assert reasons[2] == "malformed JSON message: JSON message must be an object, got list"
    assert [h["spanwatch.source.offset"] for _, h in letters] == [b"0", b"2", b"3"]
    assert {h["spanwatch.source.topic"] for _, h in letters} == {topic.encode()}
