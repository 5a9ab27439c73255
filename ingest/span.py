"""Records that leave the ingest stage: one `LLMSpan` per GenAI call and one `EvalResult` per
evaluation that arrived apart from the span it judges.

Every later stage sees only these records, never raw OTLP. Times are integer Unix nanoseconds
(cheap to carry and compare on the hot path); `*_at` properties give UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, make_dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

SpanKind = Literal["llm", "embedding", "retrieval", "request"]
"""llm and embedding are model calls; retrieval and request (a trace's root) are kept for
pipeline metrics such as root latency and retrieval latency."""

CostSource = Literal["attribute", "pricing"]


def unix_ns_to_datetime(unix_ns: int) -> datetime:
    """UTC datetime of an OTLP timestamp in Unix nanoseconds."""
    return datetime.fromtimestamp(unix_ns / 1e9, tz=UTC)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Who and what a call belongs to; often set only on the trace's root span.

    Trace assembly fills gaps in an LLM span's context from its root (`merged_with`).
    """

    service: str | None = None
    environment: str | None = None
    app_version: str | None = None
    prompt_template_version: str | None = None
    model_version: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    user_segment: str | None = None
    endpoint: str | None = None

    def merged_with(self, other: TraceContext) -> TraceContext:
        """This context with its empty fields taken from `other` (own values win)."""
        return build_context(  # positional, in field order (assembly calls this per span)
            self.service or other.service,
            self.environment or other.environment,
            self.app_version or other.app_version,
            self.prompt_template_version or other.prompt_template_version,
            self.model_version or other.model_version,
            self.session_id or other.session_id,
            self.user_id or other.user_id,
            self.user_segment or other.user_segment,
            self.endpoint or other.endpoint,
        )

    @property
    def is_complete(self) -> bool:
        """Whether every field is known, so waiting for the root span cannot add anything."""
        return all(getattr(self, name) is not None for name in self.__slots__)


@dataclass(frozen=True, slots=True)
class EvalScore:
    """One evaluation of a model output: a numeric score, a label, or both."""

    name: str
    score: float | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class LLMSpan:
    """A normalised GenAI span (or a root/retrieval span kept for pipeline metrics)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: SpanKind
    name: str
    start_unix_ns: int
    end_unix_ns: int
    context: TraceContext
    operation: str | None = None
    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    time_to_first_token_s: float | None = None
    is_streaming: bool | None = None
    finish_reasons: tuple[str, ...] = ()
    is_error: bool = False
    error_kind: str | None = None
    error_type: str | None = None
    http_status: int | None = None
    is_refusal: bool = False
    is_cache_hit: bool | None = None
    feedback: Literal["positive", "negative"] | None = None
    is_regenerated: bool | None = None
    evals: tuple[EvalScore, ...] = ()
    cost_usd: float | None = None
    cost_source: CostSource | None = None
    unknown_cost_reason: str | None = None

    @property
    def duration_s(self) -> float:
        """Wall time of the call in seconds (end minus start)."""
        return max(0, self.end_unix_ns - self.start_unix_ns) / 1e9

    @property
    def start_at(self) -> datetime:
        return unix_ns_to_datetime(self.start_unix_ns)

    @property
    def end_at(self) -> datetime:
        return unix_ns_to_datetime(self.end_unix_ns)

    @property
    def model(self) -> str | None:
        """The model label used for series: the requested family, else the response snapshot."""
        return self.request_model or self.response_model

    @property
    def is_root(self) -> bool:
        return self.parent_span_id is None

    def with_context(self, context: TraceContext) -> LLMSpan:
        """This span with another context (as `dataclasses.replace`, without its keyword
        `__init__`: assembly calls this per held span). Written out field by field: slot reads
        in a method, straight into the twin, cost about 60% of an `attrgetter` of the fields
        passed through `build_llm_span` (tests check it equals `replace`)."""
        span: Any = _LLM_SPAN_TWIN(
            self.trace_id, self.span_id, self.parent_span_id, self.kind, self.name,
            self.start_unix_ns, self.end_unix_ns, context, self.operation, self.provider,
            self.request_model, self.response_model, self.input_tokens, self.output_tokens,
            self.cached_input_tokens, self.reasoning_tokens, self.time_to_first_token_s,
            self.is_streaming, self.finish_reasons, self.is_error, self.error_kind,
            self.error_type, self.http_status, self.is_refusal, self.is_cache_hit,
            self.feedback, self.is_regenerated, self.evals, self.cost_usd, self.cost_source,
            self.unknown_cost_reason)
        span.__class__ = LLMSpan  # see fast_builder
        return span  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class EvalResult:
    """An evaluation that arrived apart from its span: a later evaluation span in the same trace
    or a `gen_ai.evaluation.result` log event. `span_id` is the judged span when known."""

    trace_id: str
    span_id: str | None
    at_unix_ns: int
    score: EvalScore
    context: TraceContext
    provider: str | None = None
    model: str | None = None

    @property
    def at(self) -> datetime:
        return unix_ns_to_datetime(self.at_unix_ns)


_T = TypeVar("_T")


def twin_of(cls: type[Any]) -> Any:
    """A plain (mutable) slotted dataclass with the same slots as the dataclass `cls`, whose
    instances may be given the class `cls` (`obj.__class__ = cls`): see `fast_builder`."""
    return make_dataclass(f"_{cls.__name__}Twin", [f.name for f in fields(cls)],
                          slots=True, eq=False, repr=False, match_args=False)


def fast_builder(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of `cls` (a frozen slotted dataclass) from all field values, in field order,
    about five times faster than `cls(...)`, for the decode hot path.

    A frozen dataclass sets each field through `object.__setattr__`; this builds a plain slotted
    twin with the same slots (so the same memory layout) and then gives the object its real
    class. The result is an ordinary, frozen `cls` instance (equal, hashable and picklable as
    one made by `cls(...)`); nothing is validated, as `cls(...)` validates nothing either.
    """
    twin = twin_of(cls)

    def build(*values: object) -> _T:
        obj = twin(*values)
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]

    return build


build_llm_span: Callable[..., LLMSpan] = fast_builder(LLMSpan)
"""`LLMSpan` from its 31 field values in declaration order (no defaults)."""
_LLM_SPAN_TWIN: Any = twin_of(LLMSpan)
build_context: Callable[..., TraceContext] = fast_builder(TraceContext)
"""`TraceContext` from its 9 field values in declaration order."""
build_eval_score: Callable[..., EvalScore] = fast_builder(EvalScore)
"""`EvalScore` from its name, score and label."""
