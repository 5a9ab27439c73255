"""The fast path walks a whole request in one call (resources, their scopes, their spans) and
builds records slot by slot: messages of several resources and scopes decode as the generic path
decodes them, a bad span anywhere declines the whole message, and the records are real ones."""

from __future__ import annotations

import pickle

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from ingest.config import IngestConfig
from ingest.decode import Decoded, Decoder
from ingest.fastpath import ProtoFastPath, _shell_of
from ingest.span import LLMSpan, TraceContext
from tests.fakes.otel_spans import T0_NS
from tests.ingest.test_fastpath import _assert_same


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(trace: int, span: int, parent: int | None, *attrs: KeyValue,
          name: str = "chat gpt-4o-mini") -> Span:
    return Span(trace_id=bytes([trace]) * 16, span_id=bytes([span]) * 8,
                parent_span_id=b"" if parent is None else bytes([parent]) * 8, name=name,
                start_time_unix_nano=T0_NS, end_time_unix_nano=T0_NS + 10**9,
                attributes=list(attrs))


def _chat(trace: int, span: int, parent: int, model: str = "gpt-4o-mini") -> Span:
    return _span(trace, span, parent, _kv("gen_ai.operation.name", "chat"),
                 _kv("gen_ai.request.model", model), _kv("gen_ai.usage.input_tokens", 100 + span),
                 _kv("session.id", f"s-{trace}"))


def _root(trace: int, span: int, route: str) -> Span:
    return _span(trace, span, None, _kv("http.route", route), name=f"POST {route}")


def _resource(service: str) -> Resource:
    return Resource(attributes=[_kv("service.name", service), _kv("service.version", "1.2")])


def _message() -> bytes:
    """Resources with two scopes (one empty), none, no resource at all, and a resource again."""
    request = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=_resource("a"), scope_spans=[
            ScopeSpans(spans=[_chat(1, 1, 2), _root(1, 2, "/chat")]),
            ScopeSpans(spans=[]),
            ScopeSpans(spans=[_chat(2, 3, 4, "claude-3-5-haiku"), _root(2, 4, "/ask")])]),
        ResourceSpans(resource=_resource("b")),
        ResourceSpans(scope_spans=[ScopeSpans(spans=[_chat(3, 5, 6), _root(3, 6, "/x")])]),
        ResourceSpans(resource=_resource("a"), scope_spans=[
            ScopeSpans(spans=[_chat(4, 7, 8)]), ScopeSpans(spans=[_root(4, 8, "/chat")])]),
    ])
    return bytes(request.SerializeToString())


def test_resources_and_scopes_of_a_message_decode_as_the_generic_path() -> None:
    fast, generic = Decoder(IngestConfig()), Decoder(IngestConfig(), fast=False)
    value = _message()
    path = fast._fast
    assert isinstance(path, ProtoFastPath)
    assert path.decode(value) is not None  # the fast path takes it
    for _ in range(2):  # resources new to the cache, then known
        got = _assert_same(value, fast, generic)
        assert isinstance(got, Decoded)
        assert got.raw_span_count == 8
        assert [(s.trace_id[:2], s.kind, s.context.service) for s in got.spans] == [
            ("01", "llm", "a"), ("01", "request", "a"), ("02", "llm", "a"),
            ("02", "request", "a"), ("03", "llm", None), ("03", "request", None),
            ("04", "llm", "a"), ("04", "request", "a")]


@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_bad_span_in_any_scope_declines_the_whole_message(where: int) -> None:
    request = ExportTraceServiceRequest.FromString(_message())
    scope = [request.resource_spans[0].scope_spans[0], request.resource_spans[0].scope_spans[2],
             request.resource_spans[3].scope_spans[1]][where]
    scope.spans[0].span_id = b"\x01\x02"  # not 8 bytes
    value = bytes(request.SerializeToString())
    fast, generic = Decoder(IngestConfig()), Decoder(IngestConfig(), fast=False)
    path = fast._fast
    assert isinstance(path, ProtoFastPath)
    assert path.decode(value) is None
    _assert_same(value, fast, generic)  # the generic path names the problem


def test_an_empty_request_is_declined() -> None:
    value = bytes(ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=_resource("a"), scope_spans=[ScopeSpans()])]).SerializeToString())
    path = Decoder(IngestConfig())._fast
    assert isinstance(path, ProtoFastPath)
    assert path.decode(value) is None


def test_shells_given_the_class_are_real_frozen_records() -> None:
    values = {name: f"v{i}" for i, name in enumerate(LLMSpan.__slots__)}
    shell = _shell_of(LLMSpan)()
    for name, value in values.items():
        setattr(shell, name, value)
    shell.__class__ = LLMSpan
    expected = LLMSpan(**values)  # type: ignore[arg-type]
    assert type(shell) is LLMSpan
    assert shell == expected
    assert pickle.loads(pickle.dumps(shell)) == expected  # noqa: S301 - our own bytes
    with pytest.raises(AttributeError):
        shell.kind = "llm"  # type: ignore[misc]  # frozen
    context = _shell_of(TraceContext)()
    for name in TraceContext.__slots__:
        setattr(context, name, name)
    context.__class__ = TraceContext
    assert context == TraceContext(**{name: name for name in TraceContext.__slots__})
    assert hash(context) == hash(TraceContext(**{name: name for name in TraceContext.__slots__}))
