"""Realistic OTLP protobuf traffic for the performance bench, at a chosen size and cardinality.

Messages are `ExportTraceServiceRequest`s as the collector's kafka exporter writes them
(`encoding: otlp_proto`): the batch processor puts the traces of a couple of seconds from
several services into one request, one `ResourceSpans` per service, roots after their children.
Services alternate between the two instrumentation dialects of `spanwatch.demo_traffic` (OTel
GenAI conventions with the app context on the root span; OpenInference with a retrieval span),
and each service has its own endpoints, models (several providers), prompt template versions
and user segments, so the shipped alerts.toml sees a few thousand series at the default size.

The injected incident is the demo's: provider rate-limit errors on one service and model
(`error-rate-high`, tier 1) for `incident_minutes`, starting at `incident_minute`.

Spans are counted as OTLP spans in the messages (roots, retrieval and LLM spans alike), which is
what "spans/s" means everywhere in the bench.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

# The demo's span builders and GenAI call, same shapes.
from spanwatch.demo_traffic import _attrs, _span, genai_call

MINUTE_NS = 60 * 1_000_000_000
SECOND_NS = 1_000_000_000

MODELS: tuple[tuple[str, str], ...] = (
    ("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("openai", "o3-mini"),
    ("anthropic", "claude-3-5-sonnet"), ("anthropic", "claude-3-5-haiku"),
    ("google", "gemini-1.5-pro"), ("google", "gemini-1.5-flash"), ("mistral", "mistral-large"),
)
SEGMENTS = ("free", "pro", "enterprise", "internal")
ENDPOINT_NAMES = ("/chat", "/search", "/summarize", "/classify", "/draft", "/agent", "/qa",
                  "/extract", "/translate", "/rewrite")


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    dialect: str  # "genai" | "openinference"
    version: str
    endpoints: tuple[str, ...]
    models: tuple[tuple[str, str], ...]
    prompts: tuple[str, ...]
    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Incident:
    service: str
    provider: str
    model: str
    start_minute: int
    end_minute: int
    error_share: float


@dataclass(slots=True)
class Message:
    value: bytes
    spans: int
    max_end_unix_ns: int
    """Highest span end in the message: the event time the flow's watermark sees from it."""


@dataclass(slots=True)
class Traffic:
    messages: list[Message] = field(default_factory=list)
    spans: int = 0
    services: tuple[Service, ...] = ()
    incident: Incident | None = None
    start_unix_ns: int = 0
    minutes: int = 0


def services_for(count: int, rng: random.Random, *, endpoints: int = 4, models: int = 3,
                 prompts: int = 3, segments: int = 3) -> tuple[Service, ...]:
    out = []
    for i in range(count):
        dialect = "genai" if i % 3 != 2 else "openinference"
        picked = tuple(rng.sample(MODELS, k=models))
        if i == 0:  # the incident's series must exist
            picked = (("openai", "gpt-4o-mini"), *[m for m in picked if m[1] != "gpt-4o-mini"])
            picked = picked[:models]
        out.append(Service(
            name=f"svc-{i:04d}", dialect=dialect, version=f"{1 + i % 4}.{i % 7}.0",
            endpoints=tuple(rng.sample(ENDPOINT_NAMES, k=min(endpoints, len(ENDPOINT_NAMES)))),
            models=picked,
            prompts=tuple(f"p{i % 50}-v{v}" for v in range(prompts)),
            segments=tuple(rng.sample(SEGMENTS, k=min(segments, len(SEGMENTS))))))
    return tuple(out)


def generate(spans: int, start_unix_ns: int, rate_per_s: float, services: int = 80, *,
             seed: int = 11, spans_per_message: int = 8192,
             incident_minute: int | None = None, incident_minutes: int = 8,
             endpoints: int = 4, models: int = 3, prompts: int = 3,
             segments: int = 3) -> Traffic:
    """About `spans` OTLP spans at `rate_per_s` spans per second of event time.

    Traces start in time order; a message is cut every `spans_per_message` spans or 200 ms of
    event time (the batch processor's defaults are 8192 spans / 200 ms), holding the traces of
    that slice grouped by service.
    """
    rng = random.Random(seed)
    duration_ns = int(spans / rate_per_s * SECOND_NS)
    minutes = -(-duration_ns // MINUTE_NS)
    svc = services_for(services, rng, endpoints=endpoints, models=models, prompts=prompts,
                       segments=segments)
    target = svc[0]
    inc_start = minutes // 2 if incident_minute is None else incident_minute
    incident = Incident(service=target.name, provider="openai", model="gpt-4o-mini",
                        start_minute=inc_start, end_minute=inc_start + incident_minutes,
                        error_share=0.35)
    traffic = Traffic(services=svc, incident=incident, start_unix_ns=start_unix_ns,
                      minutes=minutes)
    # ~2.6 spans per trace on average (genai: 2, openinference: 3 + weights)
    weights = [3.0 if i == 0 else 1.0 / (1 + i % 10) for i in range(len(svc))]
    traces_total = max(1, int(spans / 2.33))
    step_ns = max(1, duration_ns // traces_total)
    pending: dict[str, list[Span]] = {}
    pending_spans = 0
    slice_start = start_unix_ns
    max_end = 0
    t = start_unix_ns
    produced = 0
    while produced < spans:
        t += step_ns
        service = rng.choices(svc, weights=weights)[0]
        trace_id = rng.randbytes(16)
        minute = (t - start_unix_ns) // MINUTE_NS
        if service.dialect == "genai":
            built = _genai_trace(rng, service, trace_id, t, minute=minute, incident=incident)
        else:
            built = _openinference_trace(rng, service, trace_id, t)
        pending.setdefault(service.name, []).extend(built)
        pending_spans += len(built)
        produced += len(built)
        max_end = max(max_end, *(s.end_time_unix_nano for s in built))
        if pending_spans >= spans_per_message or t - slice_start >= SECOND_NS // 5:
            traffic.messages.append(_message(pending, svc, max_end, pending_spans))
            traffic.spans += pending_spans
            pending, pending_spans, slice_start = {}, 0, t
    if pending_spans:
        traffic.messages.append(_message(pending, svc, max_end, pending_spans))
        traffic.spans += pending_spans
    return traffic


def _message(pending: dict[str, list[Span]], services: tuple[Service, ...], max_end: int,
             count: int) -> Message:
    by_name = {s.name: s for s in services}
    request = ExportTraceServiceRequest()
    for name, spans in pending.items():
        service = by_name[name]
        scope = ("opentelemetry.instrumentation.openai_v2" if service.dialect == "genai"
                 else "openinference.instrumentation.openai")
        request.resource_spans.append(ResourceSpans(
            resource=Resource(attributes=_attrs({
                "service.name": name, "service.version": service.version,
                "deployment.environment": "prod"})),
            scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope), spans=spans)]))
    return Message(value=request.SerializeToString(), spans=count, max_end_unix_ns=max_end)


def _genai_trace(rng: random.Random, service: Service, trace_id: bytes, start: int, *,
                 minute: int, incident: Incident) -> list[Span]:
    """OTel GenAI conventions: LLM span, then the root with the app context."""
    root_id, llm_id = rng.randbytes(8), rng.randbytes(8)
    provider, model = rng.choice(service.models)
    in_incident = (service.name == incident.service and model == incident.model
                   and incident.start_minute <= minute < incident.end_minute)
    llm = genai_call(rng, trace_id, llm_id, root_id, provider=provider, model=model, start=start,
                     error_share=incident.error_share if in_incident else None)
    root = _span(trace_id, root_id, b"", f"POST {service.endpoints[0]}",
                 kind=Span.SPAN_KIND_SERVER, start=start, end=llm.end_time_unix_nano + 3_000_000,
                 attrs={"http.route": rng.choice(service.endpoints),
                        "app.prompt_template_version": rng.choice(service.prompts),
                        "app.user_segment": rng.choice(service.segments),
                        "session.id": f"s-{rng.randrange(500)}",
                        "user.id": f"u-{rng.randrange(300)}",
                        "app.user_feedback": "negative" if rng.random() < 0.05 else "positive"})
    return [llm, root]


def _openinference_trace(rng: random.Random, service: Service, trace_id: bytes,
                         start: int) -> list[Span]:
    """OpenInference: retrieval and LLM (INTERNAL) spans, session on the LLM span, then root."""
    root_id, retr_id, llm_id = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
    provider, model = rng.choice(service.models)
    retrieval_end = start + int(rng.lognormvariate(-2.5, 0.3) * SECOND_NS)
    llm_end = retrieval_end + int(rng.lognormvariate(0.0, 0.3) * SECOND_NS)
    return [
        _span(trace_id, retr_id, root_id, "vector search", kind=Span.SPAN_KIND_INTERNAL,
              start=start, end=retrieval_end, attrs={"openinference.span.kind": "RETRIEVER"}),
        _span(trace_id, llm_id, root_id, "ChatCompletion", kind=Span.SPAN_KIND_INTERNAL,
              start=retrieval_end, end=llm_end, attrs={
                  "openinference.span.kind": "LLM", "llm.system": provider,
                  "llm.provider": provider, "llm.model_name": model,
                  "llm.invocation_parameters": f'{{"model": "{model}", "temperature": 0}}',
                  "llm.token_count.prompt": rng.randrange(1500, 4000),
                  "llm.token_count.completion": rng.randrange(100, 300),
                  "llm.finish_reason": "stop", "session.id": f"q-{rng.randrange(200)}",
                  "llm.prompt_template.version": rng.choice(service.prompts),
              }),
        _span(trace_id, root_id, b"", "GET /search", kind=Span.SPAN_KIND_SERVER, start=start,
              end=llm_end + 2_000_000, attrs={"http.route": rng.choice(service.endpoints),
                                              "app.user_segment": rng.choice(service.segments)}),
    ]
