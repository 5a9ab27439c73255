"""Realistic GenAI span traffic for `spanwatch demo`, as the collector's kafka exporter writes it.

Two services in two instrumentation dialects (OTel GenAI conventions and OpenInference), several
models and prompt template versions, streaming calls with first-chunk events, evaluation events,
roots exported after their children, and one injected incident: a burst of provider rate-limit
errors on one series. A few malformed messages show the dead-letter path.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

MINUTE_NS = 60 * 1_000_000_000
SECOND_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Incident:
    """The injected problem: rate-limit errors on one service and model for some minutes."""

    service: str
    model: str
    start_minute: int
    end_minute: int
    error_share: float


@dataclass(frozen=True, slots=True)
class DemoTraffic:
    messages: list[tuple[bytes | None, bytes]]
    """(key, value) pairs in publish order."""
    spans: int
    malformed: int
    incident: Incident


def _value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def _attrs(attrs: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items()]


def _span(trace_id: bytes, span_id: bytes, parent: bytes, name: str, *,
          kind: Span.SpanKind.ValueType, start: int, end: int, attrs: dict[str, object],
          error: str | None = None,
          events: list[tuple[str, int, dict[str, object]]] | None = None) -> Span:
    span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=kind,
                start_time_unix_nano=start, end_time_unix_nano=end, attributes=_attrs(attrs))
    for event_name, at, event_attrs in events or []:
        span.events.add(name=event_name, time_unix_nano=at, attributes=_attrs(event_attrs))
    if error is not None:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return span


def _request(service: str, version: str, spans: list[Span], scope: str) -> bytes:
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=_attrs({"service.name": service, "service.version": version,
                                             "deployment.environment": "prod"})),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope), spans=spans)])])
    return bytes(request.SerializeToString())


def generate(start_unix_ns: int, minutes: int = 30, requests_per_minute: int = 60,
             seed: int = 7) -> DemoTraffic:
    """`minutes` of traffic starting at `start_unix_ns`; deterministic for a given seed."""
    rng = random.Random(seed)
    incident = Incident(service="support-bot", model="gpt-4o-mini",
                        start_minute=minutes // 2, end_minute=minutes // 2 + 6,
                        error_share=0.35)
    messages: list[tuple[bytes | None, bytes]] = []
    span_count = 0
    for minute in range(minutes):
        batch_support: list[Span] = []
        batch_search: list[Span] = []
        for _ in range(requests_per_minute):
            trace_id = rng.randbytes(16)
            start = start_unix_ns + minute * MINUTE_NS + rng.randrange(0, 55 * SECOND_NS)
            if rng.random() < 0.7:
                batch_support.extend(_support_trace(rng, trace_id, start, minute, incident))
            else:
                batch_search.extend(_search_trace(rng, trace_id, start))
        span_count += len(batch_support) + len(batch_search)
        messages.append((None, _request("support-bot", "1.4.2", batch_support,
                                        "opentelemetry.instrumentation.openai_v2")))
        messages.append((None, _request("search-assistant", "2.0.1", batch_search,
                                        "openinference.instrumentation.openai")))
        if minute % 10 == 5:  # a producer bug now and then: must land in the DLQ, not stop us
            messages.append((b"bad", b'{"resourceSpans": [{"scopeSpans": "oops"}]}'))
            messages.append((b"bad", rng.randbytes(40)))
    malformed = sum(1 for key, _ in messages if key == b"bad")
    return DemoTraffic(messages=messages, spans=span_count, malformed=malformed,
                       incident=incident)


def genai_call(rng: random.Random, trace_id: bytes, span_id: bytes, root_id: bytes, *,
               provider: str, model: str, start: int, error_share: float | None) -> Span:
    """A streamed chat call in OTel GenAI conventions, starting 5-40 ms after `start`: a
    first-chunk event and sometimes an evaluation event; or, with probability `error_share`
    (None: never, without drawing), a provider rate-limit error. (Shared with the bench's
    traffic, so both draw from `rng` in this order.)"""
    llm_start = start + rng.randrange(5, 40) * 1_000_000
    ttft = int(rng.lognormvariate(-1.0, 0.35) * SECOND_NS)
    duration = ttft + int(rng.lognormvariate(0.3, 0.4) * SECOND_NS)
    attrs: dict[str, object] = {
        "gen_ai.operation.name": "chat", "gen_ai.system": provider,
        "gen_ai.request.model": model, "gen_ai.response.model": f"{model}-2024-07-18",
        "gen_ai.request.stream": True,
    }
    error = None
    events: list[tuple[str, int, dict[str, object]]] = []
    if error_share is not None and rng.random() < error_share:
        duration = int(0.2 * SECOND_NS)
        error = (f"Error code: 429 - {{'error': {{'message': 'Rate limit reached for {model}', "
                 "'type': 'requests', 'code': 'rate_limit_exceeded'}}")
        attrs["error.type"] = "<class 'openai.RateLimitError'>"
        events.append(("exception", llm_start + duration,
                       {"exception.type": "openai.RateLimitError", "exception.message": error}))
    else:
        attrs.update({
            "gen_ai.usage.input_tokens": rng.randrange(400, 1800),
            "gen_ai.usage.output_tokens": rng.randrange(80, 450),
            "gen_ai.response.finish_reasons": ["stop" if rng.random() < 0.95 else "length"],
        })
        events.append(("gen_ai.content.completion.chunk", llm_start + ttft, {}))
        if rng.random() < 0.3:
            events.append(("gen_ai.evaluation.result", llm_start + duration,
                           {"gen_ai.evaluation.name": "relevance",
                            "gen_ai.evaluation.score.value": round(rng.uniform(0.7, 1.0), 2)}))
    return _span(trace_id, span_id, root_id, f"chat {model}", kind=Span.SPAN_KIND_CLIENT,
                 start=llm_start, end=llm_start + duration, attrs=attrs, error=error,
                 events=events)


def _support_trace(rng: random.Random, trace_id: bytes, start: int, minute: int,
                   incident: Incident) -> Iterator[Span]:
    """OTel GenAI conventions; app context only on the root span, exported after the child."""
    root_id, llm_id = rng.randbytes(8), rng.randbytes(8)
    model = "gpt-4o-mini" if rng.random() < 0.8 else "gpt-4o"
    in_incident = (model == incident.model
                   and incident.start_minute <= minute < incident.end_minute)
    llm = genai_call(rng, trace_id, llm_id, root_id, provider="openai", model=model,
                     start=start, error_share=incident.error_share if in_incident else None)
    yield llm
    yield _span(trace_id, root_id, b"", "POST /chat", kind=Span.SPAN_KIND_SERVER, start=start,
                end=llm.end_time_unix_nano + 3_000_000, attrs={
                    "http.route": "/chat", "app.prompt_template_version":
                    "support-v7" if rng.random() < 0.5 else "support-v8",
                    "session.id": f"s-{rng.randrange(500)}", "user.id": f"u-{rng.randrange(300)}",
                    "app.user_feedback": "negative" if rng.random() < 0.05 else "positive"})


def _search_trace(rng: random.Random, trace_id: bytes, start: int) -> Iterator[Span]:
    """OpenInference dialect: INTERNAL spans, llm.* attributes, session on the LLM span."""
    root_id, retr_id, llm_id = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
    retrieval_end = start + int(rng.lognormvariate(-2.5, 0.3) * SECOND_NS)
    llm_end = retrieval_end + int(rng.lognormvariate(0.0, 0.3) * SECOND_NS)
    yield _span(trace_id, retr_id, root_id, "vector search", kind=Span.SPAN_KIND_INTERNAL,
                start=start, end=retrieval_end, attrs={"openinference.span.kind": "RETRIEVER"})
    yield _span(trace_id, llm_id, root_id, "ChatCompletion", kind=Span.SPAN_KIND_INTERNAL,
                start=retrieval_end, end=llm_end, attrs={
                    "openinference.span.kind": "LLM", "llm.system": "openai",
                    "llm.provider": "openai", "llm.model_name": "claude-3-5-sonnet-20241022",
                    "llm.invocation_parameters": '{"model": "claude-3-5-sonnet", "temperature": 0}',
                    "llm.token_count.prompt": rng.randrange(1500, 4000),
                    "llm.token_count.completion": rng.randrange(100, 300),
                    "llm.finish_reason": "stop", "session.id": f"q-{rng.randrange(200)}",
                    "llm.prompt_template.version": "search-v3",
                })
    yield _span(trace_id, root_id, b"", "GET /search", kind=Span.SPAN_KIND_SERVER, start=start,
                end=llm_end + 2_000_000, attrs={"http.route": "/search"})
