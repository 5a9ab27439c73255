"""OTLP protobuf traffic with exactly known totals, for the flow's exactness and backtest tests.

- `SkewedTraffic`: messages for several Kafka partitions whose event times are skewed (at the
  same offset, partition p is `p * skew` minutes behind partition 0), with the expected request,
  error and span totals per (series, minute) under `GROUP_BY`, and deliberately late messages
  that are kept out of those totals.
- `incident_traffic`: long, low-rate traffic of two services with a few error incidents, in
  publish order, for comparing `backtest` with the live flow.

Every trace is an LLM call (CLIENT span with gen_ai attributes) under a root SERVER span, both
in one message, child first, as an SDK batch exports them. With `roots_in_next_message`, the
root of each message's last-ending trace goes out with the partition's next message instead (an
SDK export batch cut between child and root): a flow reading a backlog then gets the child at
the end of one source batch and its root in the next.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from metrics.bucket import minute_of
from metrics.series import SeriesKey

MINUTE_NS = 60 * 1_000_000_000
SECOND_NS = 1_000_000_000
MS_NS = 1_000_000

SERVICES = ("checkout-bot", "search-bot")
MODELS = ("gpt-4o-mini", "gpt-4o")
GROUP_BY = ("service", "model")
"""The series the exactness rule groups by (root `request` spans land in `model=""`)."""

SeriesMinute = tuple[SeriesKey, int]


@dataclass(slots=True)
class Totals:
    """What one (series, minute) bucket must hold."""

    requests: int = 0
    """Model calls (LLM spans)."""
    errors: int = 0
    """Model calls with error status."""
    spans: int = 0
    """Every kept span: LLM spans and root request spans."""

    def as_tuple(self) -> tuple[int, int, int]:
        return self.requests, self.errors, self.spans


@dataclass(frozen=True, slots=True)
class Call:
    """One trace: an LLM call under a root request span."""

    service: str
    model: str
    start_unix_ns: int
    duration_ns: int
    error: bool = False
    ttft_ns: int = 400 * MS_NS
    input_tokens: int = 800
    output_tokens: int = 200
    session: str = "s-0"
    user: str = "u-0"
    prompt_version: str = "v1"

    @property
    def llm_end_unix_ns(self) -> int:
        return self.start_unix_ns + 5 * MS_NS + self.duration_ns

    @property
    def root_end_unix_ns(self) -> int:
        return self.llm_end_unix_ns + 2 * MS_NS


@dataclass(frozen=True, slots=True)
class Message:
    partition: int
    value: bytes
    records: int
    """Records (spans) the flow keeps from it."""


def _attrs(attrs: dict[str, object]) -> list[KeyValue]:
    out: list[KeyValue] = []
    for key, value in attrs.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        else:
            any_value = AnyValue(string_value=str(value))
        out.append(KeyValue(key=key, value=any_value))
    return out


def _spans(rng: random.Random, call: Call) -> list[Span]:
    trace_id, root_id, llm_id = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
    llm_start = call.start_unix_ns + 5 * MS_NS
    attrs: dict[str, object] = {
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
        "gen_ai.request.model": call.model, "gen_ai.response.model": call.model,
    }
    llm = Span(trace_id=trace_id, span_id=llm_id, parent_span_id=root_id,
               name=f"chat {call.model}", kind=Span.SPAN_KIND_CLIENT,
               start_time_unix_nano=llm_start, end_time_unix_nano=call.llm_end_unix_ns)
    if call.error:
        attrs["error.type"] = "openai.RateLimitError"
        llm.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR,
                                   message="Error code: 429 - rate_limit_exceeded"))
    else:
        attrs.update({"gen_ai.usage.input_tokens": call.input_tokens,
                      "gen_ai.usage.output_tokens": call.output_tokens,
                      "gen_ai.response.finish_reasons": "stop"})
        llm.events.add(name="gen_ai.content.completion.chunk",
                       time_unix_nano=llm_start + call.ttft_ns)
    llm.attributes.extend(_attrs(attrs))
    root = Span(trace_id=trace_id, span_id=root_id, name="POST /chat",
                kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=call.start_unix_ns,
                end_time_unix_nano=call.root_end_unix_ns,
                attributes=_attrs({"http.route": "/chat", "session.id": call.session,
                                   "user.id": call.user,
                                   "app.prompt_template_version": call.prompt_version}))
    return [llm, root]


def encode(rng: random.Random, calls: Sequence[Call]) -> bytes:
    """One ExportTraceServiceRequest with a ResourceSpans per service."""
    by_service: dict[str, list[Span]] = {}
    for call in calls:
        by_service.setdefault(call.service, []).extend(_spans(rng, call))
    return encode_spans(by_service)


def encode_spans(by_service: dict[str, list[Span]]) -> bytes:
    """One ExportTraceServiceRequest with a ResourceSpans per service."""
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=_attrs({"service.name": service,
                                             "service.version": "1.0.0",
                                             "deployment.environment": "prod"})),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(
            name="opentelemetry.instrumentation.openai_v2"), spans=spans)])
        for service, spans in sorted(by_service.items())])
    return bytes(request.SerializeToString())


def series(service: str, model: str) -> SeriesKey:
    return (("service", service), ("model", model))


@dataclass
class SkewedTraffic:
    """Traffic for `partitions` partitions; see the module docstring.

    `round(i)` is the i-th message of every partition: partition p's covers event minute
    `i + (partitions - 1 - p) * skew_minutes`, so partition 0 runs furthest ahead.
    """

    start_unix_ns: int
    partitions: int = 4
    skew_minutes: int = 3
    calls_per_message: int = 3
    error_share: float = 0.2
    seed: int = 11
    roots_in_next_message: bool = False
    """See the module docstring; `finish()` then publishes the roots still carried over."""
    expected: dict[SeriesMinute, Totals] = field(default_factory=dict)
    published_records: int = 0
    """Records of on-time messages handed out so far."""
    late_records: int = 0
    """Records of deliberately late messages handed out so far (never in `expected`)."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._carried: dict[int, tuple[str, Span]] = {}
        """Per partition: (service, root span) waiting for the partition's next message."""

    def minute_start(self, minute: int) -> int:
        return self.start_unix_ns + minute * MINUTE_NS

    def minute_of_round(self, index: int, partition: int) -> int:
        return index + (self.partitions - 1 - partition) * self.skew_minutes

    def round(self, index: int) -> list[Message]:
        return [self._message(p, self.minute_of_round(index, p)) for p in range(self.partitions)]

    def _message(self, partition: int, minute: int) -> Message:
        rng = self._rng
        calls = [Call(service=rng.choice(SERVICES), model=rng.choice(MODELS),
                      start_unix_ns=self.minute_start(minute) + rng.randrange(0, 55 * SECOND_NS),
                      duration_ns=rng.randrange(300, 3000) * MS_NS,
                      error=rng.random() < self.error_share)
                 for _ in range(self.calls_per_message)]
        for call in calls:
            self._expect(series(call.service, call.model), call.llm_end_unix_ns,
                         requests=1, errors=int(call.error))
            self._expect(series(call.service, ""), call.root_end_unix_ns)
        by_service: dict[str, list[Span]] = {}
        carried = self._carried.pop(partition, None)
        if carried is not None:
            by_service.setdefault(carried[0], []).append(carried[1])
        last = max(calls, key=lambda c: c.llm_end_unix_ns)
        for call in calls:
            llm, root = _spans(rng, call)
            by_service.setdefault(call.service, []).append(llm)
            if self.roots_in_next_message and call is last:
                self._carried[partition] = (call.service, root)
            else:
                by_service[call.service].append(root)
        return self._handed_out(partition, by_service)

    def _handed_out(self, partition: int, by_service: dict[str, list[Span]]) -> Message:
        records = sum(len(spans) for spans in by_service.values())
        self.published_records += records
        return Message(partition, encode_spans(by_service), records)

    def finish(self) -> list[Message]:
        """One message per partition with a root still carried over (publish last)."""
        carried, self._carried = self._carried, {}
        return [self._handed_out(p, {service: [root]})
                for p, (service, root) in sorted(carried.items())]

    def _expect(self, key: SeriesKey, end_unix_ns: int, *, requests: int = 0,
                errors: int = 0) -> None:
        minute = minute_of(end_unix_ns)
        totals = self.expected.setdefault((key, minute), Totals())
        totals.requests += requests
        totals.errors += errors
        totals.spans += 1

    def late(self, partition: int, minute: int, calls: int, service: str,
             model: str) -> Message:
        """`calls` traces of (service, model) ending early in `minute`; not in `expected`."""
        start = self.minute_start(minute)
        batch = [Call(service=service, model=model, start_unix_ns=start + i * SECOND_NS,
                      duration_ns=500 * MS_NS) for i in range(calls)]
        self.late_records += 2 * calls
        return Message(partition, encode(self._rng, batch), 2 * calls)


@dataclass(frozen=True, slots=True)
class Incident:
    """Extra calls of one service and model for some minutes, a share of them failing."""

    service: str
    model: str
    start_minute: int
    minutes: int
    calls_per_minute: int
    error_share: float

    def covers(self, minute: int) -> bool:
        return self.start_minute <= minute < self.start_minute + self.minutes


def incident_traffic(start_unix_ns: int, minutes: int, calls_per_minute: int,
                     incidents: Sequence[Incident], seed: int = 5) -> list[bytes]:
    """`minutes` of low-rate traffic (one message per minute and service), with incidents."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for minute in range(minutes):
        base = start_unix_ns + minute * MINUTE_NS
        calls: list[Call] = []
        for _ in range(calls_per_minute):
            calls.append(_normal_call(rng, rng.choice(SERVICES), base))
        for incident in incidents:
            if incident.covers(minute):
                for _ in range(incident.calls_per_minute):
                    call = _normal_call(rng, incident.service, base, model=incident.model)
                    if rng.random() < incident.error_share:
                        call = Call(service=call.service, model=call.model,
                                    start_unix_ns=call.start_unix_ns,
                                    duration_ns=200 * MS_NS, error=True,
                                    session=call.session, user=call.user)
                    calls.append(call)
        for service in SERVICES:
            mine = [c for c in calls if c.service == service]
            if mine:
                out.append(encode(rng, mine))
    return out


def span_count(values: Sequence[bytes]) -> int:
    """Spans in OTLP protobuf trace requests."""
    total = 0
    for value in values:
        request = ExportTraceServiceRequest.FromString(value)
        total += sum(len(scope.spans) for resource in request.resource_spans
                     for scope in resource.scope_spans)
    return total


def _normal_call(rng: random.Random, service: str, minute_start: int,
                 model: str | None = None) -> Call:
    ttft = int(rng.lognormvariate(-1.0, 0.3) * SECOND_NS)
    return Call(service=service, model=model or rng.choice(MODELS),
                start_unix_ns=minute_start + rng.randrange(0, 50 * SECOND_NS),
                duration_ns=ttft + int(rng.lognormvariate(0.3, 0.3) * SECOND_NS),
                ttft_ns=ttft, input_tokens=rng.randrange(400, 1600),
                output_tokens=rng.randrange(80, 400), session=f"s-{rng.randrange(300)}",
                user=f"u-{rng.randrange(200)}",
                prompt_version="v7" if rng.random() < 0.5 else "v8")
