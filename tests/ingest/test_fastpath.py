"""The `otlp_proto` fast path gives exactly what the generic path gives (differential tests):
on every recorded dialect fixture, on the bench traffic, and on generated spans."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from bench.traffic import MINUTE_NS, generate
from ingest.config import AttributeKeys, IngestConfig
from ingest.decode import DeadLetter, Decoded, Decoder, SourceMessage
from ingest.fastpath import ProtoFastPath
from ingest.recorded import read_messages
from ingest.span import LLMSpan, TraceContext, build_context, build_llm_span
from tests.fakes.genai_trace import chat_trace
from tests.fakes.otel_spans import T0_NS, SpanRecorder, otlp_proto

DIALECTS = Path(__file__).parent.parent / "data" / "dialects"
CONFIGS = {
    "default": IngestConfig(),
    "hashed": IngestConfig(hash_user_ids=True),
    # Config keys overlapping the built-in ones and each other, and a content key (dropped).
    "custom_keys": IngestConfig(attributes=AttributeKeys(
        session_id=["gen_ai.request.model", "session.id", "session.id"],
        endpoint=["input.value", "http.route"], cost_usd=["gen_ai.usage.input_tokens"])),
}


def _pair(config: IngestConfig) -> tuple[Decoder, Decoder]:
    return Decoder(config), Decoder(config, fast=False)


def _assert_same(value: bytes, fast: Decoder, generic: Decoder) -> Decoded | DeadLetter:
    message = SourceMessage(topic="otlp_spans", partition=0, offset=7, key=None, value=value)
    expected = generic.decode(message)
    got = fast.decode(message)
    assert got == expected
    # Field-wise too: == on records compares every field, and the types must match as well.
    if isinstance(got, Decoded) and isinstance(expected, Decoded):
        for a, b in zip(got.spans, expected.spans, strict=True):
            assert type(a) is LLMSpan and type(a.context) is TraceContext
            assert [type(getattr(a, f)) for f in a.__slots__] == \
                [type(getattr(b, f)) for f in b.__slots__]
    return got


def _fast_handles(decoder: Decoder, value: bytes) -> bool:
    fast = decoder._fast
    assert isinstance(fast, ProtoFastPath)
    return fast.decode(value) is not None


@pytest.mark.parametrize("config", CONFIGS.values(), ids=list(CONFIGS))
@pytest.mark.parametrize("path", sorted(DIALECTS.glob("*.otlp.pb")), ids=lambda p: p.name)
def test_dialect_fixtures_decode_the_same(path: Path, config: IngestConfig) -> None:
    fast, generic = _pair(config)
    messages = list(read_messages(path))
    assert messages
    for message in messages:
        assert message.value is not None
        _assert_same(message.value, fast, generic)
        if ".logs." not in path.name:
            assert _fast_handles(fast, message.value)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=list(CONFIGS))
def test_bench_traffic_decodes_the_same(config: IngestConfig) -> None:
    fast, generic = _pair(config)
    traffic = generate(1500, 1000 * MINUTE_NS, 500.0, services=12, spans_per_message=10)
    kinds: set[str] = set()
    for message in traffic.messages:
        result = _assert_same(message.value, fast, generic)
        assert isinstance(result, Decoded)
        kinds.update(span.kind for span in result.spans)
        assert _fast_handles(fast, message.value)
    assert kinds == {"llm", "retrieval", "request"}


def test_sdk_chat_trace_decodes_the_same() -> None:
    fast, generic = _pair(IngestConfig())
    value = otlp_proto(chat_trace(SpanRecorder(service="support-bot"), T0_NS).spans)
    result = _assert_same(value, fast, generic)
    assert isinstance(result, Decoded) and len(result.spans) == 2


def test_bad_messages_dead_letter_the_same() -> None:
    fast, generic = _pair(IngestConfig())
    good = otlp_proto(chat_trace(SpanRecorder(), T0_NS).spans)
    request = ExportTraceServiceRequest.FromString(good)
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01\x02"
    for value in (good[:-7], b"\x0a\x03abc", bytes(request.SerializeToString()), b"\x00" * 9):
        assert isinstance(_assert_same(value, fast, generic), DeadLetter)


def test_a_failing_fast_path_falls_back_to_the_generic_one(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fast, generic = _pair(IngestConfig())

    def broken(*_: object) -> bool:
        raise KeyError("some attribute value")

    monkeypatch.setattr(fast._fast, "_spans", broken)
    value = otlp_proto(chat_trace(SpanRecorder(), T0_NS).spans)
    for _ in range(3):
        assert isinstance(_assert_same(value, fast, generic), Decoded)
    warnings = [r for r in caplog.records if "fast path failed" in r.getMessage()]
    assert len(warnings) == 1  # once, and without the value
    assert "some attribute value" not in caplog.text


def test_fast_builders_make_real_frozen_records() -> None:
    context = build_context("svc", None, None, None, None, "s", "u", None, "/chat")
    assert context == TraceContext(service="svc", session_id="s", user_id="u", endpoint="/chat")
    assert hash(context) == hash(TraceContext(service="svc", session_id="s", user_id="u",
                                              endpoint="/chat"))
    values = [f"v{i}" for i in range(len(LLMSpan.__slots__))]
    span = build_llm_span(*values)
    assert span == LLMSpan(*values)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        span.kind = "llm"  # type: ignore[misc]


# --- generated spans ---------------------------------------------------------------------------

_KEYS = sorted({
    *(k for names in AttributeKeys().model_dump().values() for k in names),
    "openinference.span.kind", "gen_ai.operation.name", "llm.request.type", "gen_ai.system",
    "gen_ai.provider.name", "llm.provider", "llm.system", "gen_ai.request.model",
    "llm.request.model", "gen_ai.response.model", "llm.model_name", "embedding.model_name",
    "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
    "gen_ai.usage.output_tokens", "llm.token_count.completion",
    "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.reasoning_tokens",
    "gen_ai.request.stream", "llm.is_streaming", "gen_ai.response.finish_reasons",
    "llm.finish_reason", "gen_ai.response.time_to_first_chunk", "db.system", "db.system.name",
    "llm.invocation_parameters", "embedding.invocation_parameters", "error.type",
    "http.response.status_code", "http.status_code",
    # rare shapes (the generic path inside the fast one), content, and unknown keys
    "eval.relevance.score", "eval.toxicity.label", "gen_ai.evaluation.name",
    "gen_ai.evaluation.score.value", "gen_ai.completion.0.finish_reason",
    "gen_ai.prompt.0.content", "input.value", "gen_ai.input.messages", "custom.thing",
    "gen_ai.prompt.template.version",
})
_STRINGS = st.sampled_from([
    "", "chat", "embeddings", "retrieval", "text_completion", "completion", "embedding", "LLM",
    "RETRIEVER", "EVALUATOR", "embedding", "openai", "OpenAI", "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18", "claude-3-5-haiku", "unknown-model", "pinecone", "stop", "length",
    "content_filter", "true", "false", "1", "0", "yes", "negative", "thumbs_up", "123", "-4",
    "1.5", "<class 'openai.RateLimitError'>", "429", '{"model": "gpt-4o", "stream": true}',
    '{"temperature": 0}', "{not json", "/chat", "sess-1", "user-42"]) | st.text(max_size=6)
_SCALARS = (st.tuples(st.just("s"), _STRINGS)
            | st.tuples(st.just("i"), st.integers(-5, 5000) | st.integers(-2**63, 2**63 - 1))
            | st.tuples(st.just("d"), st.floats(-10, 1e6, allow_nan=False))
            | st.tuples(st.just("b"), st.booleans())
            | st.tuples(st.just("x"), st.binary(max_size=3))
            | st.tuples(st.just("k"), st.none())
            | st.tuples(st.just("n"), st.none()))
_VALUES = _SCALARS | st.tuples(st.just("a"), st.lists(_SCALARS, max_size=3))


def _any_value(spec: tuple[str, Any]) -> AnyValue:
    kind, value = spec
    if kind == "s":
        return AnyValue(string_value=value)
    if kind == "i":
        return AnyValue(int_value=value)
    if kind == "d":
        return AnyValue(double_value=value)
    if kind == "b":
        return AnyValue(bool_value=value)
    if kind == "x":
        return AnyValue(bytes_value=value)
    if kind == "k":
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="a")]))
    if kind == "a":
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in value]))
    return AnyValue()  # no value set at all


_ATTRS = st.lists(st.tuples(st.sampled_from(_KEYS) | st.text(max_size=8), _VALUES), max_size=9)
_EVENTS = st.lists(st.tuples(
    st.sampled_from(["gen_ai.content.completion.chunk", "First Token Stream Event", "exception",
                     "gen_ai.evaluation.result", "log"]),
    st.integers(0, 3_000_000_000),
    st.lists(st.tuples(st.sampled_from([
        "exception.type", "exception.message", "gen_ai.evaluation.name",
        "gen_ai.evaluation.score.value", "gen_ai.evaluation.score.label"]), _VALUES),
        max_size=3)), max_size=3)
_SPANS = st.lists(st.fixed_dictionaries({
    "attrs": _ATTRS, "events": _EVENTS, "root": st.booleans(),
    "name": st.sampled_from(["chat gpt-4o", "", "POST /chat", "evaluate answer", "tool"]),
    "status": st.sampled_from([0, 1, 2]),
    "message": st.sampled_from(["", "Error code: 429 - rate_limit_exceeded", "timed out"]),
}), min_size=1, max_size=4)


def _request(resources: list[tuple[list[Any], list[dict[str, Any]]]], seed: int) -> bytes:
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    for resource_attrs, spans in resources:
        out = []
        for spec in spans:
            span = Span(
                trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                parent_span_id=b"" if spec["root"] else rng.randbytes(8), name=spec["name"],
                start_time_unix_nano=T0_NS, end_time_unix_nano=T0_NS + 2_000_000_000,
                attributes=[KeyValue(key=k, value=_any_value(v)) for k, v in spec["attrs"]],
                status=Status(code=spec["status"], message=spec["message"]))
            for name, offset, attrs in spec["events"]:
                span.events.add(name=name, time_unix_nano=T0_NS - 1000 + offset, attributes=[
                    KeyValue(key=k, value=_any_value(v)) for k, v in attrs])
            out.append(span)
        request.resource_spans.append(ResourceSpans(
            resource=Resource(attributes=[KeyValue(key=k, value=_any_value(v))
                                          for k, v in resource_attrs]),
            scope_spans=[ScopeSpans(spans=out)]))
    return bytes(request.SerializeToString())


_PAIRS = {name: _pair(config) for name, config in CONFIGS.items()}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(_ATTRS, _SPANS), min_size=1, max_size=3),
       st.sampled_from(sorted(_PAIRS)), st.integers(0, 1000))
def test_generated_spans_decode_the_same(resources: list[tuple[list[Any], list[Any]]],
                                         config: str, seed: int) -> None:
    fast, generic = _PAIRS[config]
    value = _request(resources, seed)
    _assert_same(value, fast, generic)
    assert _fast_handles(fast, value)
