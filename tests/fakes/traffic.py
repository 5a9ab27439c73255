"""Synthetic LLM application traffic for rule tests: `LLMSpan`s and `EvalResult`s as they leave
trace assembly (context already joined from the root span), made directly, without OTLP.

Two services with a diurnal load (quiet nights, a weekend dip, Poisson arrivals per minute):
a support chat bot (two providers' models, a prompt A/B test with equal arms, a semantic cache,
inline guardrail and format checks) and a RAG search assistant (embedding, retrieval and chat
calls, faithfulness judged, long answers allowed). Every request is a root `request` span with its
calls under it; latencies, TTFT, decode speed and tokens are lognormal, costs come from the
shipped price table, and a share of answers gets user feedback, is regenerated, refused,
truncated, served from cache or judged (quality and groundedness as later evaluation records,
safety and format checks inline on the call). Requests belong to sessions of a few turns, and
sessions to users of a segment.

Generation is stateless per minute: minute `m` of service `s` draws from its own seeded
`random.Random`, so a run restored from a snapshot sees exactly the traffic an uninterrupted run
would. Incidents are `Injection`s: field changes (or ramps) of a service or of some of its
models for a time range, extra services (a traffic surge, a new job) or extra records per minute
(a runaway session).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from ingest.pricing import PriceTable
from ingest.span import EvalResult, EvalScore, LLMSpan, TraceContext

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
SESSION_BLOCK_NS = 10 * MINUTE_NS
"""The requests of one (normal) session arrive within one such block."""
MAX_SPILL_NS = 8 * MINUTE_NS
"""No record's event time is later than this after the start of its request's minute."""
START = datetime(2025, 1, 6, tzinfo=UTC)
"""A Monday, 00:00 UTC: the default start of a simulated week."""
START_NS = int(START.timestamp()) * SECOND_NS
PEAK_HOUR = 15
"""Load peaks at 15:00 UTC and bottoms out twelve hours earlier."""

QUALITY_EVAL = "helpfulness"
GROUNDEDNESS_EVAL = "faithfulness"
SAFETY_EVAL = "toxicity"

Record = LLMSpan | EvalResult


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model a service calls, its share of the calls and how it behaves."""

    provider: str
    model: str
    weight: float
    ttft_median_s: float
    tokens_per_s: float
    response_model: str | None = None
    """Snapshot name in responses (defaults to `model`)."""
    model_version: str | None = None
    error_share: float = 0.004
    refusal_share: float = 0.02
    truncation_share: float = 0.01
    """Answers cut at the service's `max_output_tokens` (finish_reason "length")."""
    ttft_stall_share: float = 0.0
    """Calls whose first token takes about `ttft_stall_s` (a stalled stream)."""
    ttft_stall_s: float = 90.0
    ttft_factor: float = 1.0
    decode_speed_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """A prompt template version: its share of requests, token sizes and judged quality."""

    version: str
    weight: float
    quality: float = 0.82
    """Mean judge score of its answers."""
    input_tokens: float = 1500.0
    """Median input tokens of a chat call."""
    output_tokens: float = 250.0
    """Median output tokens of a chat call."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """An application: its load shape, models, prompts, users and answer quality."""

    name: str
    endpoint: str
    peak_rpm: float
    """Requests per minute at the weekday peak."""
    models: tuple[ModelSpec, ...]
    prompts: tuple[PromptSpec, ...]
    segments: tuple[tuple[str, float], ...] = (("free", 0.6), ("pro", 0.3), ("enterprise", 0.1))
    night_share: float = 0.1
    """Load at the nightly trough, as a share of the peak."""
    weekend_share: float = 0.6
    """Load on Saturdays and Sundays, as a share of a weekday's."""
    rate_factor: float = 1.0
    environment: str = "prod"
    app_version: str = "2.3.1"
    max_output_tokens: int = 1024
    input_sigma: float = 0.35
    output_sigma: float = 0.45
    input_token_factor: float = 1.0
    output_token_factor: float = 1.0
    overhead_s: float = 0.12
    """Application time of a request outside its calls."""
    latency_stall_share: float = 0.0
    """Requests that hang in the application (a tool call) for about `latency_stall_s`."""
    latency_stall_s: float = 75.0
    rag: bool = False
    """Each request embeds the query and retrieves context before the chat call."""
    embedding_provider: str = "openai"
    embedding_model: str = "text-embedding-3-small"
    retrieval_p50_s: float = 0.15
    retrieval_latency_factor: float = 1.0
    groundedness: float = 0.9
    groundedness_eval_share: float = 0.5
    quality_eval_share: float = 0.5
    quality_sd: float = 0.1
    quality_shift: float = 0.0
    """Added to every prompt version's quality (a judged quality drop is negative)."""
    safety_eval_share: float = 1.0
    safety_fail_share: float = 0.0
    heuristic_eval: str | None = None
    heuristic_fail_share: float = 0.002
    cache_hit_share: float | None = None
    """Semantic-cache hit share; None: the service reports no cache status."""
    feedback_share: float = 0.3
    negative_feedback_share: float = 0.05
    regeneration_share: float = 0.02
    session_turns: float = 3.0
    """Mean requests per session."""
    with_roots: bool = True
    """False: calls are root spans themselves (batch jobs without an application span)."""


SUPPORT_BOT = ServiceSpec(
    name="support-bot", endpoint="/chat", peak_rpm=18.0,
    models=(ModelSpec("openai", "gpt-4o-mini", 0.8, ttft_median_s=0.32, tokens_per_s=95.0,
                      response_model="gpt-4o-mini-2024-07-18", model_version="2024-07-18",
                      truncation_share=0.015),
            ModelSpec("anthropic", "claude-3-5-haiku", 0.2, ttft_median_s=0.38,
                      tokens_per_s=70.0, response_model="claude-3-5-haiku-20241022",
                      model_version="20241022", truncation_share=0.015)),
    prompts=(PromptSpec("support-v7", 0.5), PromptSpec("support-v8", 0.5)),
    heuristic_eval="json_valid", cache_hit_share=0.45)
SEARCH_ASSISTANT = ServiceSpec(
    name="search-assistant", endpoint="/search", peak_rpm=6.0,
    models=(ModelSpec("openai", "gpt-4o", 1.0, ttft_median_s=0.42, tokens_per_s=60.0,
                      response_model="gpt-4o-2024-08-06", model_version="2024-08-06",
                      truncation_share=0.0),),
    prompts=(PromptSpec("search-v3", 1.0, quality=0.8, input_tokens=3000.0,
                        output_tokens=300.0),),
    segments=(("free", 0.7), ("pro", 0.3)), max_output_tokens=4096, rag=True,
    session_turns=2.0)
SERVICES: tuple[ServiceSpec, ...] = (SUPPORT_BOT, SEARCH_ASSISTANT)

_SERVICE_FIELDS = frozenset(f.name for f in fields(ServiceSpec))
_MODEL_FIELDS = frozenset(f.name for f in fields(ModelSpec))

ExtraRecords = Callable[["TrafficGenerator", int], list[Record]]
"""Extra records of one minute (its start in Unix ns) while an injection is active."""


@dataclass(frozen=True)
class Injection:
    """An incident: while `start_ns <= minute < end_ns`, the matching service (`service`, or
    every service when None) gets `changes` (ServiceSpec fields), its numeric fields in `ramp`
    are multiplied by a factor moving linearly from `ramp[name][0]` to `ramp[name][1]`, and its
    models matching `provider` / `model` (None: any) get `model_changes` (ModelSpec fields).
    `add_service` is an extra traffic source while active; `add_records` adds records per
    minute."""

    start_ns: int
    end_ns: int
    service: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    ramp: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    provider: str | None = None
    model: str | None = None
    model_changes: Mapping[str, Any] = field(default_factory=dict)
    add_service: ServiceSpec | None = None
    add_records: ExtraRecords | None = None

    def __post_init__(self) -> None:
        if self.end_ns <= self.start_ns:
            raise ValueError(f"injection ends ({self.end_ns}) before it starts "
                             f"({self.start_ns})")
        unknown = (set(self.changes) | set(self.ramp)) - _SERVICE_FIELDS
        unknown |= set(self.model_changes) - _MODEL_FIELDS
        if unknown:
            raise ValueError(f"injection changes unknown field(s) {sorted(unknown)}")

    def is_active(self, at_ns: int) -> bool:
        return self.start_ns <= at_ns < self.end_ns

    def apply(self, spec: ServiceSpec, at_ns: int) -> ServiceSpec:
        """`spec` as this injection changes it at `at_ns` (unchanged when inactive or when it
        targets another service)."""
        if not self.is_active(at_ns) or self.service not in (None, spec.name):
            return spec
        if self.changes:
            spec = replace(spec, **self.changes)
        if self.ramp:
            progress = (at_ns - self.start_ns) / (self.end_ns - self.start_ns)
            scaled = {name: getattr(spec, name) * (low + (high - low) * progress)
                      for name, (low, high) in self.ramp.items()}
            spec = replace(spec, **scaled)
        if self.model_changes:
            spec = replace(spec, models=tuple(
                replace(m, **self.model_changes)
                if self.provider in (None, m.provider) and self.model in (None, m.model) else m
                for m in spec.models))
        return spec


class _Weighted(Protocol):
    @property
    def weight(self) -> float: ...


W = TypeVar("W", bound=_Weighted)


def _pick(rng: random.Random, items: Sequence[W]) -> W:
    total = sum(item.weight for item in items)
    point = rng.random() * total
    for item in items:
        point -= item.weight
        if point < 0:
            return item
    return items[-1]


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth below 30, a rounded normal above)."""
    if lam <= 0:
        return 0
    if lam >= 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def _ns(seconds: float) -> int:
    return round(seconds * SECOND_NS)


def diurnal_share(spec: ServiceSpec, at_ns: int) -> float:
    """Load at `at_ns` as a share of the weekday peak: a smooth day with a nightly trough at
    `night_share`, and `weekend_share` on Saturdays and Sundays."""
    at = datetime.fromtimestamp(at_ns / SECOND_NS, tz=UTC)
    hours = at.hour + at.minute / 60
    day = ((1 - math.cos(2 * math.pi * (hours - PEAK_HOUR + 12) / 24)) / 2) ** 2
    share = spec.night_share + (1 - spec.night_share) * day
    return share * (spec.weekend_share if at.weekday() >= 5 else 1.0)


class TrafficGenerator:
    """Seeded traffic of `services` with `injections`; see the module docstring."""

    def __init__(self, services: Sequence[ServiceSpec] = SERVICES, *, seed: int = 7,
                 injections: Sequence[Injection] = (), prices: PriceTable | None = None) -> None:
        self.services = tuple(services)
        self.seed = seed
        self.injections = tuple(injections)
        self.prices = prices or PriceTable.load()

    def with_injections(self, *injections: Injection) -> TrafficGenerator:
        """The same traffic with more incidents."""
        return TrafficGenerator(self.services, seed=self.seed,
                                injections=(*self.injections, *injections), prices=self.prices)

    def spec_at(self, spec: ServiceSpec, at_ns: int) -> ServiceSpec:
        for injection in self.injections:
            spec = injection.apply(spec, at_ns)
        return spec

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def expected_rpm(self, spec: ServiceSpec, at_ns: int) -> float:
        """Mean requests per minute of `spec` (as injections leave it) at `at_ns`."""
        return spec.peak_rpm * spec.rate_factor * diurnal_share(spec, at_ns)

    def rng(self, *parts: object) -> random.Random:
        """A random stream for `parts` (e.g. a service and a minute), the same in every run."""
        return random.Random("/".join(str(part) for part in (self.seed, *parts)))

    def minute(self, minute_ns: int) -> list[Record]:
        """Every record of the requests that arrive in the minute starting at `minute_ns`."""
        out: list[Record] = []
        sources = [*self.services, *(i.add_service for i in self.injections
                                     if i.add_service is not None and i.is_active(minute_ns))]
        for base in sources:
            spec = self.spec_at(base, minute_ns)
            rng = self.rng(spec.name, minute_ns)
            for _ in range(poisson(rng, self.expected_rpm(spec, minute_ns))):
                out.extend(self.request(spec, rng, minute_ns + rng.randrange(MINUTE_NS)))
        for injection in self.injections:
            if injection.add_records is not None and injection.is_active(minute_ns):
                out.extend(injection.add_records(self, minute_ns))
        return out

    def minutes(self, start_ns: int, end_ns: int) -> Iterator[tuple[int, list[Record]]]:
        """(minute start, records of the requests arriving in it) from `start_ns` to `end_ns`."""
        for minute_ns in range(start_ns - start_ns % MINUTE_NS, end_ns, MINUTE_NS):
            yield minute_ns, self.minute(minute_ns)

    # --- one request ---

    def session_of(self, spec: ServiceSpec, at_ns: int, rng: random.Random) -> str:
        """A session of `spec` active at `at_ns`: sessions live within a 10-minute block, and
        a block has as many as its expected requests / `session_turns`."""
        block = at_ns // SESSION_BLOCK_NS
        expected = self.expected_rpm(spec, block * SESSION_BLOCK_NS) * SESSION_BLOCK_NS / MINUTE_NS
        slots = max(1, round(expected / spec.session_turns))
        return f"{spec.name}-{block}-{rng.randrange(slots)}"

    @staticmethod
    def user_of(spec: ServiceSpec, session_id: str) -> tuple[str, str]:
        """(user segment, user id) of a session, fixed by its id."""
        crc = zlib.crc32(session_id.encode())
        point = crc / 2**32 * sum(weight for _, weight in spec.segments)
        segment = spec.segments[-1][0]
        for name, weight in spec.segments:
            point -= weight
            if point < 0:
                segment = name
                break
        return segment, f"user-{crc % 4000}"

    def cost_of(self, model: str, input_tokens: int, output_tokens: int
                ) -> tuple[float | None, str | None]:
        """(cost in USD, unknown-cost reason) as ingest prices a call."""
        price = self.prices.price_of(model)
        if price is None:
            return None, "unknown_model"
        return price.cost_usd(input_tokens, output_tokens, 0), None

    def request(self, spec: ServiceSpec, rng: random.Random, start_ns: int, *,
                session_id: str | None = None) -> list[Record]:
        """The records of one request starting at `start_ns`: root, calls and evaluations."""
        model = _pick(rng, spec.models)
        prompt = _pick(rng, spec.prompts)
        session = session_id or self.session_of(spec, start_ns, rng)
        segment, user = self.user_of(spec, session)
        context = TraceContext(
            service=spec.name, environment=spec.environment, app_version=spec.app_version,
            prompt_template_version=prompt.version, model_version=model.model_version,
            session_id=session, user_id=user, user_segment=segment, endpoint=spec.endpoint)
        trace_id = f"{rng.getrandbits(128):032x}"
        root_id = f"{rng.getrandbits(64):016x}" if spec.with_roots else None
        out: list[Record] = []
        at = start_ns + _ns(rng.uniform(0.005, 0.03))
        if spec.rag:
            at = self._retrieve(spec, rng, context, trace_id=trace_id, root_id=root_id, at=at,
                                out=out)
        llm = self._call(spec, model, prompt, rng=rng, context=context, trace_id=trace_id,
                         root_id=root_id, at=at)
        out.append(llm)
        end = llm.end_unix_ns + _ns(spec.overhead_s * rng.uniform(0.5, 1.5))
        if rng.random() < spec.latency_stall_share:
            end += _ns(spec.latency_stall_s * rng.uniform(0.9, 1.4))
        if root_id is not None:
            feedback: Literal["positive", "negative"] | None = None
            if rng.random() < spec.feedback_share:
                feedback = "negative" if rng.random() < spec.negative_feedback_share \
                    else "positive"
            out.append(LLMSpan(
                trace_id=trace_id, span_id=root_id, parent_span_id=None, kind="request",
                name=f"POST {spec.endpoint}", start_unix_ns=start_ns, end_unix_ns=end,
                context=context, is_error=llm.is_error, feedback=feedback,
                is_regenerated=rng.random() < spec.regeneration_share))
        if not llm.is_error:
            out.extend(self._judged(spec, prompt, rng, context, llm))
        latest = max(r.end_unix_ns if isinstance(r, LLMSpan) else r.at_unix_ns for r in out)
        if latest - (start_ns - start_ns % MINUTE_NS) >= MAX_SPILL_NS:
            raise ValueError(f"a {spec.name} request ends {latest - start_ns} ns after it "
                             f"starts; the generator promises less than {MAX_SPILL_NS}")
        return out

    def _retrieve(self, spec: ServiceSpec, rng: random.Random, context: TraceContext, *,
                  trace_id: str, root_id: str | None, at: int, out: list[Record]) -> int:
        tokens = max(1, round(_lognormal(rng, 24, 0.4)))
        cost, reason = self.cost_of(spec.embedding_model, tokens, 0)
        end = at + _ns(_lognormal(rng, 0.08, 0.3))
        out.append(LLMSpan(
            trace_id=trace_id, span_id=f"{rng.getrandbits(64):016x}", parent_span_id=root_id,
            kind="embedding", name=f"embeddings {spec.embedding_model}", start_unix_ns=at,
            end_unix_ns=end, context=context, operation="embeddings",
            provider=spec.embedding_provider, request_model=spec.embedding_model,
            response_model=spec.embedding_model, input_tokens=tokens, cost_usd=cost,
            cost_source="pricing" if cost is not None else None, unknown_cost_reason=reason))
        at = end + _ns(rng.uniform(0.001, 0.005))
        end = at + _ns(_lognormal(rng, spec.retrieval_p50_s * spec.retrieval_latency_factor, 0.3))
        out.append(LLMSpan(
            trace_id=trace_id, span_id=f"{rng.getrandbits(64):016x}", parent_span_id=root_id,
            kind="retrieval", name="retrieve documents", start_unix_ns=at, end_unix_ns=end,
            context=context, operation="retrieval"))
        return end + _ns(rng.uniform(0.001, 0.005))

    def _call(self, spec: ServiceSpec, model: ModelSpec, prompt: PromptSpec, *,
              rng: random.Random, context: TraceContext, trace_id: str, root_id: str | None,
              at: int) -> LLMSpan:
        base: dict[str, Any] = {
            "trace_id": trace_id, "span_id": f"{rng.getrandbits(64):016x}",
            "parent_span_id": root_id, "kind": "llm", "name": f"chat {model.model}",
            "start_unix_ns": at, "context": context, "operation": "chat",
            "provider": model.provider, "request_model": model.model,
            "response_model": model.response_model or model.model, "is_streaming": True}
        is_hit = spec.cache_hit_share is not None and rng.random() < spec.cache_hit_share
        hit: bool | None = None if spec.cache_hit_share is None else is_hit
        if not is_hit and rng.random() < model.error_share:
            kind, error_type, status, seconds = rng.choices(
                (("rate_limit", "RateLimitError", 429, 0.4),
                 ("server_error", "InternalServerError", 500, 1.5),
                 ("timeout", "APITimeoutError", None, 20.0)), weights=(0.5, 0.35, 0.15))[0]
            return LLMSpan(**base, end_unix_ns=at + _ns(_lognormal(rng, seconds, 0.2)),
                           is_error=True, error_kind=kind, error_type=error_type,
                           http_status=status, is_cache_hit=hit, cost_usd=0.0,
                           cost_source="pricing")
        evals = self._inline_evals(spec, rng)
        if is_hit:  # replayed from the semantic cache: fast, free, no token usage
            ttft = _lognormal(rng, 0.03, 0.3)
            return LLMSpan(**base, end_unix_ns=at + _ns(ttft + _lognormal(rng, 0.02, 0.3)),
                           time_to_first_token_s=ttft, finish_reasons=("stop",),
                           is_cache_hit=True, evals=evals, cost_usd=0.0,
                           cost_source="attribute")
        input_tokens = max(1, round(_lognormal(rng, prompt.input_tokens * spec.input_token_factor,
                                               spec.input_sigma)))
        output = _lognormal(rng, prompt.output_tokens * spec.output_token_factor,
                            spec.output_sigma)
        is_refusal = rng.random() < model.refusal_share
        if is_refusal:
            output = _lognormal(rng, 35, 0.3)
        output_tokens = max(1, min(round(output), spec.max_output_tokens))
        if (not is_refusal and rng.random() < model.truncation_share) \
                or output_tokens >= spec.max_output_tokens:
            output_tokens, finish = spec.max_output_tokens, "length"
        else:
            finish = "stop"
        ttft = _lognormal(rng, model.ttft_median_s * model.ttft_factor, 0.35)
        if rng.random() < model.ttft_stall_share:
            ttft = model.ttft_stall_s * rng.uniform(0.85, 1.3)
        speed = _lognormal(rng, model.tokens_per_s * model.decode_speed_factor, 0.15)
        cost, reason = self.cost_of(model.model, input_tokens, output_tokens)
        return LLMSpan(**base, end_unix_ns=at + _ns(ttft + output_tokens / speed),
                       input_tokens=input_tokens, output_tokens=output_tokens,
                       time_to_first_token_s=ttft, finish_reasons=(finish,),
                       is_refusal=is_refusal, is_cache_hit=hit, evals=evals, cost_usd=cost,
                       cost_source="pricing" if cost is not None else None,
                       unknown_cost_reason=reason)

    @staticmethod
    def _inline_evals(spec: ServiceSpec, rng: random.Random) -> tuple[EvalScore, ...]:
        """Guardrail (safety) and format checks that run before the answer is returned."""
        evals: list[EvalScore] = []
        if spec.heuristic_eval is not None:
            ok = rng.random() >= spec.heuristic_fail_share
            evals.append(EvalScore(spec.heuristic_eval, label="valid" if ok else "invalid"))
        if rng.random() < spec.safety_eval_share:
            failed = rng.random() < spec.safety_fail_share
            evals.append(EvalScore(SAFETY_EVAL, score=rng.uniform(0.8, 0.99) if failed
                                   else _clamp01(_lognormal(rng, 0.02, 0.5))))
        return tuple(evals)

    @staticmethod
    def _judged(spec: ServiceSpec, prompt: PromptSpec, rng: random.Random,
                context: TraceContext, llm: LLMSpan) -> list[Record]:
        """LLM-judge evaluations, arriving 5-40 s after the answer."""
        out: list[Record] = []
        judged: list[tuple[str, float, float, float]] = [
            (QUALITY_EVAL, spec.quality_eval_share, prompt.quality + spec.quality_shift,
             spec.quality_sd)]
        if spec.rag:
            judged.append((GROUNDEDNESS_EVAL, spec.groundedness_eval_share, spec.groundedness,
                           0.08))
        for name, share, mean, sd in judged:
            if rng.random() < share:
                out.append(EvalResult(
                    trace_id=llm.trace_id, span_id=llm.span_id,
                    at_unix_ns=llm.end_unix_ns + _ns(rng.uniform(5, 40)),
                    score=EvalScore(name, score=round(_clamp01(rng.gauss(mean, sd)), 4)),
                    context=context, provider=llm.provider, model=llm.model))
        return out


# --- incidents that add records ---

def requests_at(spec: ServiceSpec, at_ns: int, count: int = 1, *,
                session_id: str | None = None) -> Injection:
    """`count` extra requests of `spec` (as given, injections aside) starting in the minute of
    `at_ns`, e.g. the one request whose answer fails a safety check."""
    minute_ns = at_ns - at_ns % MINUTE_NS

    def extra(generator: TrafficGenerator, now_ns: int) -> list[Record]:
        rng = generator.rng("extra", spec.name, session_id, at_ns)
        out: list[Record] = []
        for _ in range(count):
            out.extend(generator.request(spec, rng, at_ns + rng.randrange(MINUTE_NS - at_ns
                                                                           % MINUTE_NS),
                                         session_id=session_id))
        return out

    return Injection(minute_ns, minute_ns + MINUTE_NS, service=spec.name, add_records=extra)


def session_burst(spec: ServiceSpec, start_ns: int, *, minutes: int, calls_per_minute: int,
                  session_id: str) -> Injection:
    """One session of `spec` making `calls_per_minute` calls a minute for `minutes` (an agent
    stuck in a loop)."""

    def extra(generator: TrafficGenerator, minute_ns: int) -> list[Record]:
        rng = generator.rng("session", session_id, minute_ns)
        out: list[Record] = []
        for _ in range(calls_per_minute):
            out.extend(generator.request(spec, rng, minute_ns + rng.randrange(MINUTE_NS),
                                         session_id=session_id))
        return out

    return Injection(start_ns, start_ns + minutes * MINUTE_NS, service=spec.name, add_records=extra)


def batch_job(name: str, model: ModelSpec, *, rpm: float, input_tokens: float,
              output_tokens: float, max_output_tokens: int = 4096) -> ServiceSpec:
    """A background job: flat load day and night, calls without an application root span,
    no user feedback and no evaluations (add it with `Injection(add_service=...)`)."""
    return ServiceSpec(
        name=name, endpoint=f"/jobs/{name}", peak_rpm=rpm, models=(model,),
        prompts=(PromptSpec(f"{name}-v1", 1.0, input_tokens=input_tokens,
                            output_tokens=output_tokens),),
        segments=(("internal", 1.0),), night_share=1.0, weekend_share=1.0,
        max_output_tokens=max_output_tokens, input_sigma=0.2, output_sigma=0.3,
        quality_eval_share=0.0, safety_eval_share=0.0, feedback_share=0.0,
        regeneration_share=0.0, session_turns=1.0, with_roots=False)


def records_by_kind(records: Sequence[Record]) -> dict[str, int]:
    """How many records of each kind (`llm`, `request`, ..., `eval`): for tests and reports."""
    counts: dict[str, int] = {}
    for record in records:
        kind = record.kind if isinstance(record, LLMSpan) else "eval"
        counts[kind] = counts.get(kind, 0) + 1
    return counts
