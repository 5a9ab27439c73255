"""The flow's decode step counts kept, ignored and unknown-cost spans and evaluations once per
batch: the counters move by exactly what the decoded messages hold."""

from __future__ import annotations

from collections import Counter

from bytewax.connectors.kafka import KafkaSourceMessage
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from prometheus_client import REGISTRY

from bench.traffic import MINUTE_NS, generate
from flows.kafka_io import KafkaItem
from flows.pipeline import decode_batch
from ingest.config import IngestConfig
from ingest.decode import Decoded, Decoder, SourceMessage
from tests.fakes.otel_spans import T0_NS

_KINDS = ("llm", "embedding", "retrieval", "request")
_REASONS = ("unknown_model", "no_token_counts", "no_model")


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _counters() -> dict[str, float]:
    return {
        "ignored": _sample("spanwatch_spans_ignored_total"),
        "evals": _sample("spanwatch_evaluations_total"),
        **{f"kind:{k}": _sample("spanwatch_spans_total", kind=k) for k in _KINDS},
        **{f"reason:{r}": _sample("spanwatch_unknown_cost_spans_total", reason=r)
           for r in _REASONS},
    }


def _odd_spans() -> bytes:
    """A tool span (ignored), model calls of unknown cost and an evaluation span."""
    def span(index: int, attrs: dict[str, str | int]) -> Span:
        return Span(trace_id=bytes([index]) * 16, span_id=bytes([index]) * 8,
                    parent_span_id=b"\x09" * 8, name=f"span {index}",
                    start_time_unix_nano=T0_NS, end_time_unix_nano=T0_NS + 10**9,
                    attributes=[KeyValue(key=k, value=AnyValue(string_value=v)
                                         if isinstance(v, str) else AnyValue(int_value=v))
                                for k, v in attrs.items()])
    spans = [span(1, {"tool.name": "search"}),
             span(2, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "mystery-model",
                      "gen_ai.usage.input_tokens": 10}),
             span(3, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}),
             span(4, {"gen_ai.evaluation.name": "relevance",
                      "gen_ai.evaluation.score.label": "pass"})]
    return bytes(ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString())


def test_decode_batch_counts_what_the_messages_hold() -> None:
    traffic = generate(400, 1000 * MINUTE_NS, 500.0, services=6, spans_per_message=10)
    values = [m.value for m in traffic.messages]
    values[3:3] = [_odd_spans()] * 3
    messages = [SourceMessage("spans", 0, i, None, v) for i, v in enumerate(values)]
    reference = Decoder(IngestConfig())
    expected: Counter[str] = Counter()
    for message in messages:
        result = reference.decode(message)
        assert isinstance(result, Decoded)
        expected["ignored"] += result.raw_span_count - len(result.spans)
        expected["evals"] += len(result.evals)
        for span in result.spans:
            expected[f"kind:{span.kind}"] += 1
            if span.unknown_cost_reason is not None:
                expected[f"reason:{span.unknown_cost_reason}"] += 1
    assert all(expected[key] for key in (
        "ignored", "evals", "kind:llm", "reason:unknown_model", "reason:no_token_counts"))
    items: list[KafkaItem] = [KafkaSourceMessage(key=None, value=m.value, topic=m.topic,
                                                 partition=0, offset=m.offset)
                              for m in messages]
    before = _counters()
    decoder = Decoder(IngestConfig())
    for start in range(0, len(items), 16):
        decode_batch(decoder, items[start:start + 16])
    after = _counters()
    assert {key: after[key] - before[key] for key in before} == \
        {key: float(expected[key]) for key in before}
