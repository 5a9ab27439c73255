"""Compressed event-time traffic for the end-to-end tests, made with the real OpenTelemetry SDK.

Every request is an application root span (SERVER, carrying endpoint and prompt version) with a
streaming chat call under it (CLIENT, GenAI attributes, a first-chunk event, token usage and
inline `gen_ai.evaluation.result` events), encoded as the collector's kafka exporter writes
`otlp_proto`. Timestamps lie hours in the past, so hours of traffic are published in one go and
the flow works through them as fast as it can (event time, not wall time, drives it).

A `Scenario` is a list of `Service`s, each a request rate over a minute range with optional
`Phase`s (from minute m: another prompt version, tokens, error share, quality, TTFT) and single
`Moment`s (one request with a failing safety evaluation). Generation is seeded: two calls give
identical messages, so a recovery run can be compared with an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from confluent_kafka import Producer
from opentelemetry.trace import SpanKind

from tests.fakes.otel_spans import SpanRecorder, otlp_proto

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
MS_NS = 1_000_000
CLOCK_SERVICE = "e2e-clock"
"""Marker traffic after the scenario: pushes the watermark past its last minute."""


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one request of a service looks."""

    prompt_version: str = "v1"
    input_tokens: int = 800
    output_tokens: int = 200
    error_share: float = 0.0
    quality: float | None = None
    """Mean of a `relevance` judge score per request (None: no quality evaluation)."""
    safety: bool = False
    """Every request carries a passing `toxicity` evaluation."""
    ttft_s: float = 0.3


@dataclass(frozen=True, slots=True)
class Phase:
    from_minute: int
    changes: dict[str, object]


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    per_minute: int
    minutes: tuple[int, int]
    """[first, last) minute of the scenario with traffic."""
    model: str = "gpt-4o-mini"
    provider: str = "openai"
    endpoint: str = "/chat"
    normal: Behaviour = field(default_factory=Behaviour)
    phases: tuple[Phase, ...] = ()
    unsafe_at: tuple[int, ...] = ()
    """Minutes in which one request's safety evaluation fails."""

    def behaviour(self, minute: int) -> Behaviour:
        current = self.normal
        for phase in sorted(self.phases, key=lambda p: p.from_minute):
            if minute >= phase.from_minute:
                current = replace(current, **phase.changes)  # type: ignore[arg-type]
        return current


@dataclass(frozen=True, slots=True)
class Scenario:
    start_ns: int
    """Event time of minute 0 (a whole minute)."""
    minutes: int
    services: tuple[Service, ...]
    seed: int = 7

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.minutes * MINUTE_NS


def _request(recorder: SpanRecorder, service: Service, behaviour: Behaviour, start_ns: int,
             rng: random.Random, *, is_error: bool, is_unsafe: bool) -> None:
    duration_ns = int((behaviour.ttft_s + 1.0 + rng.random()) * SECOND_NS)
    attrs: dict[str, object] = {
        "gen_ai.operation.name": "chat", "gen_ai.system": service.provider,
        "gen_ai.provider.name": service.provider,
        "gen_ai.request.model": service.model, "gen_ai.response.model": service.model,
        "gen_ai.request.stream": True,
    }
    first_chunk = start_ns + int(behaviour.ttft_s * SECOND_NS)
    events: list[tuple[str, int, dict[str, object]]] = []
    if is_error:
        attrs["error.type"] = "RateLimitError"
        events.append(("exception", start_ns + duration_ns,
                       {"exception.type": "openai.RateLimitError",
                        "exception.message": "429 rate limit exceeded"}))
    else:
        jitter = rng.uniform(0.9, 1.1)
        attrs.update({"gen_ai.usage.input_tokens": int(behaviour.input_tokens * jitter),
                      "gen_ai.usage.output_tokens": int(behaviour.output_tokens * jitter),
                      "gen_ai.response.finish_reasons": ("stop",)})
        events.append(("gen_ai.content.completion.chunk", first_chunk, {}))
        if behaviour.quality is not None:
            score = min(1.0, max(0.0, rng.gauss(behaviour.quality, 0.04)))
            events.append(("gen_ai.evaluation.result", start_ns + duration_ns,
                           {"gen_ai.evaluation.name": "relevance",
                            "gen_ai.evaluation.score.value": round(score, 4)}))
        if behaviour.safety or is_unsafe:
            events.append(("gen_ai.evaluation.result", start_ns + duration_ns,
                           {"gen_ai.evaluation.name": "toxicity",
                            "gen_ai.evaluation.score.value": 0.97 if is_unsafe else 0.02}))
    root_attrs = {"http.route": service.endpoint,
                  "app.prompt_template_version": behaviour.prompt_version,
                  "app.version": "2.0.0"}
    with recorder.span("POST " + service.endpoint, start_ns=start_ns,
                       end_ns=start_ns + duration_ns + 20 * MS_NS, kind=SpanKind.SERVER,
                       attributes=root_attrs) as root, \
         recorder.span(f"chat {service.model}", start_ns=start_ns + 5 * MS_NS,
                       end_ns=start_ns + duration_ns, attributes=attrs, parent=root,
                       error="429 rate limit exceeded" if is_error else None, events=events):
        pass


def service_minute(recorder: SpanRecorder, scenario: Scenario, service: Service,
                   minute: int) -> bytes | None:
    """One OTLP message with the service's requests that start in `minute`."""
    first, last = service.minutes
    if not first <= minute < last:
        return None
    rng = random.Random(f"{scenario.seed}/{service.name}/{minute}")
    behaviour = service.behaviour(minute)
    errors = round(service.per_minute * behaviour.error_share)
    base = scenario.start_ns + minute * MINUTE_NS
    for i in range(service.per_minute):
        # Requests start in the first 55 s, so the chat call ends within the minute or just
        # after it (event time is the end).
        start = base + int(i * 55 * SECOND_NS / service.per_minute)
        _request(recorder, service, behaviour, start, rng, is_error=i < errors,
                 is_unsafe=minute in service.unsafe_at and i == service.per_minute - 1)
    return otlp_proto(recorder.take())


def messages(scenario: Scenario) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) per service and minute, in event-time order."""
    recorders = {s.name: SpanRecorder(service=s.name) for s in scenario.services}
    for minute in range(scenario.minutes):
        for service in scenario.services:
            value = service_minute(recorders[service.name], scenario, service, minute)
            if value is not None:
                yield f"{service.name}/{minute}".encode(), value


def clock_messages(scenario: Scenario, after_minutes: Sequence[int],
                   service: str = CLOCK_SERVICE) -> list[bytes]:
    """One request of `service` at each of `after_minutes` past the scenario's end."""
    recorder = SpanRecorder(service=service)
    clock = Service(service, 1, (0, 1))
    out = []
    for minutes in after_minutes:
        _request(recorder, clock, clock.normal, scenario.end_ns + minutes * MINUTE_NS,
                 random.Random(minutes), is_error=False, is_unsafe=False)
        out.append(otlp_proto(recorder.take()))
    return out


def publish(bootstrap: str, topic: str, items: Sequence[tuple[bytes, bytes]],
            partitions: int, *, markers: Sequence[bytes] = ()) -> None:
    """Publish the scenario (keyed, so the broker spreads services over partitions), then
    every marker to every partition, so each partition's event time passes the end."""
    # Idempotence keeps each partition in production order across retries (a fresh topic's
    # first requests can fail while its leader is elected); reordered, later minutes would
    # overtake earlier ones and make their records late.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "enable.idempotence": True})
    for key, value in items:
        producer.produce(topic, key=key, value=value)
    for marker in markers:
        for partition in range(partitions):
            producer.produce(topic, key=b"clock", value=marker, partition=partition)
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} messages were not delivered to the broker")
