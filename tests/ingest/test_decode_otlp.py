"""Decode + normalise of spans made by the real OpenTelemetry SDK, in both collector encodings."""

from __future__ import annotations

import json

import pytest

from ingest.config import IngestConfig
from ingest.decode import DeadLetter, Decoded, Decoder, SourceMessage
from ingest.export import record_to_json
from ingest.span import EvalScore, LLMSpan, TraceContext
from tests.fakes.genai_trace import MS, SECRET_PROMPT, chat_trace
from tests.fakes.otel_spans import T0_NS, SpanRecorder, otlp_json, otlp_proto

ENCODERS = {"otlp_proto": otlp_proto, "otlp_json": otlp_json}


def _decode(value: bytes, **config: object) -> Decoded:
    result = Decoder(IngestConfig(**config)).decode(  # type: ignore[arg-type]
        SourceMessage(topic="otlp_spans", partition=0, offset=0, key=None, value=value))
    assert isinstance(result, Decoded), result
    return result


@pytest.mark.parametrize("encoding", ENCODERS)
def test_chat_span_decodes_field_by_field(encoding: str) -> None:
    trace = chat_trace(SpanRecorder(service="support-bot"), T0_NS)
    decoded = _decode(ENCODERS[encoding](trace.spans))
    llm, root = decoded.spans
    assert llm == LLMSpan(
        trace_id=trace.trace_id, span_id=trace.llm_span_id, parent_span_id=trace.root_span_id,
        kind="llm", name="chat gpt-4o-mini",
        start_unix_ns=T0_NS + 150 * MS, end_unix_ns=T0_NS + 1650 * MS,
        # Before assembly the LLM span knows only its resource; the root carries the rest.
        context=TraceContext(service="support-bot"),
        operation="chat", provider="openai", request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18", input_tokens=1200, output_tokens=300,
        cached_input_tokens=200, reasoning_tokens=None, time_to_first_token_s=0.4,
        is_streaming=True, finish_reasons=("stop",), is_error=False,
        evals=(EvalScore(name="relevance", score=0.875, label=None),),
        # 1000 uncached input x 0.15 + 200 cached x 0.075 + 300 output x 0.60, per 1M tokens
        cost_usd=(1000 * 0.15 + 200 * 0.075 + 300 * 0.6) / 1e6, cost_source="pricing",
    )
    assert llm.duration_s == pytest.approx(1.5)
    assert root.kind == "request"
    assert root.context == TraceContext(
        service="support-bot", app_version="1.4.2", prompt_template_version="support-v7",
        session_id="sess-42", user_id="user-7", endpoint="/chat")


@pytest.mark.parametrize("encoding", ENCODERS)
def test_rate_limit_error_is_normalised(encoding: str) -> None:
    message = ("Error code: 429 - {'error': {'message': 'Rate limit reached', "
               "'type': 'requests', 'code': 'rate_limit_exceeded'}}")
    trace = chat_trace(SpanRecorder(), T0_NS, error=message)
    llm = _decode(ENCODERS[encoding](trace.spans)).spans[0]
    assert (llm.is_error, llm.error_kind, llm.error_type, llm.http_status) == (
        True, "rate_limit", "openai.RateLimitError", 429)
    # A request that failed before usage was reported is not billed.
    assert (llm.cost_usd, llm.unknown_cost_reason) == (0.0, None)
    assert llm.time_to_first_token_s is None


@pytest.mark.parametrize("encoding", ENCODERS)
def test_prompt_and_completion_content_never_leaves_decode(encoding: str) -> None:
    trace = chat_trace(SpanRecorder(), T0_NS)
    decoded = _decode(ENCODERS[encoding](trace.spans))
    rendered = json.dumps([record_to_json(s) for s in decoded.spans])
    assert "4111" not in rendered
    assert SECRET_PROMPT not in repr(decoded)


def test_user_ids_are_hashed_when_configured() -> None:
    trace = chat_trace(SpanRecorder(), T0_NS)
    root = _decode(otlp_proto(trace.spans), hash_user_ids=True, user_id_salt="pepper").spans[1]
    assert root.context.user_id is not None
    assert root.context.user_id != "user-7"
    assert len(root.context.user_id) == 16
    again = _decode(otlp_proto(trace.spans), hash_user_ids=True, user_id_salt="pepper").spans[1]
    assert again.context.user_id == root.context.user_id  # stable pseudonym: users still count


def test_unknown_model_has_unknown_cost_not_zero() -> None:
    trace = chat_trace(SpanRecorder(), T0_NS, model="acme-llm-9")
    llm = _decode(otlp_proto(trace.spans)).spans[0]
    assert (llm.cost_usd, llm.cost_source, llm.unknown_cost_reason) == (
        None, None, "unknown_model")


def test_explicit_cost_attribute_wins_over_the_price_table() -> None:
    recorder = SpanRecorder()
    with recorder.span("chat gpt-4o", start_ns=T0_NS, end_ns=T0_NS + MS, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cost": 0.5}):
        pass
    llm = _decode(otlp_proto(recorder.take())).spans[0]
    assert (llm.cost_usd, llm.cost_source) == (0.5, "attribute")


def test_non_genai_child_spans_are_dropped_but_counted() -> None:
    recorder = SpanRecorder()
    with recorder.span("root", start_ns=T0_NS, end_ns=T0_NS + 10 * MS) as root, \
         recorder.span("tool: lookup_order", start_ns=T0_NS + MS, end_ns=T0_NS + 2 * MS,
                       parent=root, attributes={"tool.name": "lookup_order"}):
        pass
    decoded = _decode(otlp_json(recorder.take()))
    assert [s.kind for s in decoded.spans] == ["request"]
    assert decoded.raw_span_count == 2


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "empty message value"),
    (b'{"resourceSpans": "x"}', "resourceSpans: must be a list, got str"),
    (b'{"hello": 1}', "neither OTLP"),
    (b"\x00\x01\x02garbage", "not an OTLP ExportTraceServiceRequest"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}',
     "resourceSpans[0].scopeSpans[0].spans[0].traceId: id 'zz' is not 16 bytes of hex"),
])
def test_bad_messages_become_dead_letters_naming_the_place(value: bytes, reason: str) -> None:
    message = SourceMessage(topic="otlp_spans", partition=3, offset=17, key=b"k", value=value)
    result = Decoder(IngestConfig()).decode(message)
    assert isinstance(result, DeadLetter)
    assert reason in result.reason
    assert dict(result.headers())["spanwatch.source.offset"] == b"17"
    assert result.source is message  # the original bytes go to the DLQ unchanged


@pytest.mark.parametrize("encoding", ENCODERS)
def test_non_ascii_digits_are_no_count_and_no_status(encoding: str) -> None:
    # "¹²".isdigit() is True but int("¹²") raises: such values must read as unknown, not
    # dead-letter the whole message.
    recorder = SpanRecorder()
    with recorder.span("chat gpt-4o", start_ns=T0_NS, end_ns=T0_NS + MS, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": "¹²", "gen_ai.usage.output_tokens": "42",
            "error.type": "¹²³"}):
        pass
    llm = _decode(ENCODERS[encoding](recorder.take())).spans[0]
    assert (llm.input_tokens, llm.output_tokens) == (None, 42)
    assert (llm.is_error, llm.error_type, llm.http_status) == (True, "¹²³", None)
