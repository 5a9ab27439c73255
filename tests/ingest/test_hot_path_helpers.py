"""Helpers written for speed on the per-span paths: they must build the same objects (same
values, same pickles) as the plain code they replace."""

from __future__ import annotations

import pickle
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from prometheus_client import REGISTRY

from flows.pipeline import _add_counts, tally
from ingest import assembly
from ingest.assembly import TraceAssembler
from ingest.config import IngestConfig
from ingest.decode import Decoded, Decoder, SourceMessage
from ingest.span import LLMSpan, TraceContext
from tests.ingest.test_fastpath import _assert_same

S = 1_000_000_000
T0 = 1_700_000_000 * S


def _span(trace: str, span: str, *, parent: str | None = "root", kind: str = "llm",
          cost: float | None = 0.01, reason: str | None = None, **context: str) -> LLMSpan:
    return LLMSpan(trace_id=trace, span_id=span, parent_span_id=parent, kind=kind,  # type: ignore[arg-type]
                   name="chat", start_unix_ns=T0, end_unix_ns=T0 + S,
                   context=TraceContext(**context), request_model="gpt-4o-mini",
                   cost_usd=cost, unknown_cost_reason=reason)


def test_fast_built_finished_trace_and_empty_context_equal_and_pickle_as_the_plain_ones() -> None:
    span = _span("t1", "a", service="bot")
    subject = assembly._Subject(span.context, span.provider, span.model)
    context = TraceContext(service="bot", session_id="s1")
    fast = assembly._new_finished(context, subject, {"a": subject})
    plain = assembly._Finished(context, subject, {"a": subject})
    assert type(fast) is assembly._Finished
    assert fast == plain and pickle.dumps(fast) == pickle.dumps(plain)
    empty = assembly._empty_context()
    assert type(empty) is TraceContext and empty == TraceContext()
    assert pickle.dumps(empty) == pickle.dumps(TraceContext())
    assert empty is not assembly._empty_context(), "a new object each time, as before"


def test_a_trace_released_without_its_root_shares_what_its_spans_know() -> None:
    assembler = TraceAssembler(wait_ns=10 * S, max_open_traces=100, max_finished_traces=100)
    first = _span("t1", "a", service="bot", session_id="s1")
    second = _span("t1", "b", user_segment="pro", environment="")
    assert assembler.add(first) == [] and assembler.add(second) == []
    released = assembler.release_all()
    # "" counts as empty but, merged over nothing, stays "" (as it always did)
    shared = TraceContext(service="bot", environment="", session_id="s1", user_segment="pro")
    assert released == [first.with_context(shared), second.with_context(shared)]
    # A straggler of the released trace is labelled from the remembered context.
    late = _span("t1", "c", environment="prod")
    assert assembler.add(late) == [late.with_context(TraceContext(
        service="bot", environment="prod", session_id="s1", user_segment="pro"))]


def test_a_trace_with_its_root_is_released_with_the_root_context_only() -> None:
    assembler = TraceAssembler(wait_ns=10 * S, max_open_traces=100, max_finished_traces=100)
    child = _span("t1", "a", session_id="own")
    other = _span("t1", "b", user_segment="pro")
    root = _span("t1", "root", parent=None, kind="request", service="web", session_id="s9")
    assert assembler.add(child) == [] and assembler.add(other) == []
    out = assembler.add(root)
    assert out == [root, child.with_context(TraceContext(service="web", session_id="own")),
                   other.with_context(TraceContext(service="web", session_id="s9",
                                                   user_segment="pro"))]
    assert assembler.release_all() == []
    # The finished trace remembers the root's context, not one merged from the held spans.
    late = _span("t1", "c")
    assert assembler.add(late) == [late.with_context(root.context)]


def _reason_samples() -> dict[str, float]:
    return {sample.labels["reason"]: sample.value
            for metric in REGISTRY.collect() if metric.name == "spanwatch_unknown_cost_spans"
            for sample in metric.samples if sample.name.endswith("_total")}


def test_counts_tally_kinds_and_unknown_cost_reasons_and_skip_known_costs() -> None:
    spans = [_span("t1", "a"), _span("t1", "b", kind="embedding"),
             _span("t2", "c", cost=None, reason="unknown_model"),
             _span("t2", "d", cost=None, reason="unknown_model"),
             _span("t3", "e", parent=None, kind="request", cost=None)]
    kinds_before = {kind: _sample("spanwatch_spans_total", kind=kind)
                    for kind in ("llm", "embedding", "request", "retrieval")}
    ignored_before = _sample("spanwatch_spans_ignored_total")
    before = _reason_samples()
    _add_counts(decoded=2, dead=0, ignored=2, evaluations=0, spans=[*spans, spans[0]])
    after = _reason_samples()
    assert "None" not in after, "spans of known cost have no reason label"
    assert after["unknown_model"] - before.get("unknown_model", 0.0) == 2
    assert {kind: _sample("spanwatch_spans_total", kind=kind) - count
            for kind, count in kinds_before.items()} == {
        "llm": 4, "embedding": 1, "request": 1, "retrieval": 0}
    assert _sample("spanwatch_spans_ignored_total") - ignored_before == 2


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@given(st.lists(st.sampled_from(["llm", "request", "retrieval", "embedding", "other", None]),
                max_size=30),
       st.lists(st.sampled_from(["llm", "request", "retrieval", "embedding", "other", None]),
                unique=True))
def test_tally_counts_as_counter_in_first_seen_order(values: list[str | None],
                                                      expected: list[str | None]) -> None:
    got = tally(values, expected)
    assert list(got.items()) == list(Counter(values).items())


def _otlp_span(trace: int, span: int, parent: int | None) -> Span:
    return Span(trace_id=bytes([trace]) * 16, span_id=bytes([span]) * 8,
                parent_span_id=b"" if parent is None else bytes([parent]) * 8,
                name="chat", start_time_unix_nano=T0, end_time_unix_nano=T0 + S,
                attributes=[KeyValue(key="gen_ai.operation.name",
                                     value=AnyValue(string_value="chat"))])


def test_the_fast_path_shares_id_strings_between_neighbouring_spans_of_a_trace() -> None:
    # Trace 1: two children then their root; trace 2 interleaved with trace 3 (no sharing
    # across them); then trace 1 again after another trace.
    spans = [_otlp_span(1, 11, 10), _otlp_span(1, 12, 10), _otlp_span(1, 10, None),
             _otlp_span(2, 21, 20), _otlp_span(3, 31, 30), _otlp_span(2, 20, None),
             _otlp_span(1, 13, 10)]
    value = bytes(ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString())
    decoder = Decoder(IngestConfig())
    got = _assert_same(value, decoder, Decoder(IngestConfig(), fast=False))
    assert isinstance(got, Decoded)
    records = list(got.spans)
    assert [(r.trace_id, r.span_id, r.parent_span_id) for r in records] == [
        (s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex() or None) for s in spans]
    child, sibling, root = records[:3]
    assert child.trace_id is sibling.trace_id is root.trace_id
    assert child.parent_span_id is sibling.parent_span_id is root.span_id
    # Decoding again (the previous message's last ids are remembered) gives equal records.
    again = decoder.decode(SourceMessage("spans", 0, 1, None, value))
    assert isinstance(again, Decoded) and again.spans == got.spans
