"""`RawSpan` / `RawLog` -> `LLMSpan` / `EvalResult`, whatever attribute dialect the span uses.

Dialects: OTel GenAI semantic conventions (old `gen_ai.system` and new `gen_ai.provider.name`),
OpenLLMetry / Traceloop, and OpenInference. Spans that are neither model calls, retrieval,
evaluation nor a trace's root are dropped here (tool and framework spans carry no metric).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ingest.config import IngestConfig
from ingest.errors import classify_error
from ingest.pricing import PriceTable
from ingest.privacy import hash_user_id
from ingest.raw import Attributes, AttrValue, RawEvent, RawLog, RawSpan
from ingest.span import (
    EvalResult,
    EvalScore,
    LLMSpan,
    SpanKind,
    TraceContext,
    build_eval_score,
)

# --- attribute names per dialect, tried in order -----------------------------------------------

PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
REQUEST_MODEL_KEYS = ("gen_ai.request.model", "llm.request.model")
RESPONSE_MODEL_KEYS = ("gen_ai.response.model", "llm.response.model", "llm.model_name",
                       "embedding.model_name")
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                    "llm.token_count.prompt", "llm.usage.prompt_tokens")
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                     "llm.token_count.completion", "llm.usage.completion_tokens")
CACHED_TOKEN_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                     "gen_ai.usage.cached_tokens", "llm.token_count.prompt_details.cache_read",
                     "gen_ai.usage.input_tokens_details.cached_tokens")
REASONING_TOKEN_KEYS = ("gen_ai.usage.reasoning_tokens", "gen_ai.usage.reasoning.output_tokens",
                        "llm.token_count.completion_details.reasoning",
                        "gen_ai.usage.output_tokens_details.reasoning_tokens")
STREAMING_KEYS = ("gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming")
FINISH_REASON_KEYS = ("gen_ai.response.finish_reasons", "llm.finish_reason",
                      "llm.response.finish_reason", "gen_ai.response.finish_reason")
TTFT_ATTRIBUTE_KEYS = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token",
                       "llm.time_to_first_token")
# Span events that mark the first streamed chunk (OTel / OpenLLMetry / OpenInference).
FIRST_CHUNK_EVENTS = frozenset({"gen_ai.content.completion.chunk", "llm.content.completion.chunk",
                                "First Token Stream Event", "gen_ai.choice.chunk"})

LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion",
                             "invoke_agent", "create_agent", "responses"})
_EMBEDDING_OPERATIONS = frozenset({"embeddings", "embedding"})
_RETRIEVAL_OPERATIONS = frozenset({"retrieval", "retrieve", "search"})
_VECTOR_DB_SYSTEMS = frozenset({"pinecone", "qdrant", "chroma", "chromadb", "weaviate", "milvus",
                                "pgvector", "lancedb", "marqo", "elasticsearch", "opensearch"})
_TRACELOOP_REQUEST_TYPES = {"chat": "chat", "completion": "text_completion",
                            "embedding": "embeddings", "rerank": "rerank"}
_OPENINFERENCE_KINDS = {"LLM": "llm", "EMBEDDING": "embedding", "RETRIEVER": "retrieval",
                        "RERANKER": "retrieval"}
_FINISH_REASON_ALIASES = {
    "tool_call": "tool_calls", "tool_use": "tool_calls", "function_call": "tool_calls",
    "max_tokens": "length", "max_output_tokens": "length", "end_turn": "stop",
    "stop_sequence": "stop", "eos": "stop", "safety": "content_filter",
    "prohibited_content": "content_filter", "blocklist": "content_filter",
    "spii": "content_filter", "recitation": "content_filter", "refusal": "refusal",
}
_REFUSAL_REASONS = frozenset({"content_filter", "refusal"})
_NEGATIVE_FEEDBACK = frozenset({"negative", "thumbs_down", "down", "bad", "-1", "0", "false"})
_POSITIVE_FEEDBACK = frozenset({"positive", "thumbs_up", "up", "good", "1", "true"})
_PASS_LABELS = frozenset({"pass", "passed", "true", "ok", "safe", "correct", "relevant"})
_FAIL_LABELS = frozenset({"fail", "failed", "false", "unsafe", "incorrect", "not_relevant"})

Classification = SpanKind | Literal["evaluation"]


@dataclass(frozen=True, slots=True)
class Normalised:
    """What one raw span or log record turned into (often nothing)."""

    span: LLMSpan | None
    evals: tuple[EvalResult, ...] = ()


_NOTHING = Normalised(span=None)


class Normaliser:
    """Turns raw spans and log records into records; holds the config and the price table."""

    def __init__(self, config: IngestConfig, prices: PriceTable) -> None:
        self._config = config
        self._keys = config.attributes
        self._prices = prices
        self._salt = config.user_id_salt.get_secret_value().encode()
        keys = self._keys
        self._context_names: tuple[Sequence[str], ...] = (
            keys.service, keys.environment, keys.app_version, keys.prompt_template_version,
            keys.model_version, keys.session_id, keys.user_id, keys.user_segment, keys.endpoint)
        self._context_keys = frozenset(k for names in self._context_names for k in names)
        # Spans of one resource share its attributes (one dict per resource in a message):
        # its context is read once, and a span without context attributes of its own reuses it.
        self._resource: Attributes | None = None
        self._resource_context = TraceContext()
        self._hashed: dict[str, str] = {}

    # --- spans ---

    def normalise_span(self, raw: RawSpan) -> Normalised:
        kind = classify(raw)
        if kind is None:
            return _NOTHING
        context = self.context_of(raw.attributes, raw.resource)
        if kind == "request" and context.endpoint is None:
            context = TraceContext(**{**_as_dict(context), "endpoint": raw.name or None})
        if kind == "evaluation":
            scores = span_eval_scores(raw)
            return Normalised(span=None, evals=tuple(
                EvalResult(trace_id=raw.trace_id, span_id=None, at_unix_ns=raw.end_unix_ns,
                           score=score, context=context)
                for score in scores))
        return Normalised(span=self._llm_span(raw, kind, context))

    def _llm_span(self, raw: RawSpan, kind: SpanKind, context: TraceContext) -> LLMSpan:
        attrs = raw.attributes
        error = classify_error(raw)
        invocation = _invocation_parameters(attrs)
        request_model = _first_str(attrs, REQUEST_MODEL_KEYS) or invocation_model(invocation)
        response_model = _first_str(attrs, RESPONSE_MODEL_KEYS)
        input_tokens = _first_int(attrs, INPUT_TOKEN_KEYS)
        output_tokens = _first_int(attrs, OUTPUT_TOKEN_KEYS)
        cached = _first_int(attrs, CACHED_TOKEN_KEYS)
        finish_reasons = _finish_reasons(attrs)
        is_model_call = kind in ("llm", "embedding")
        refusal = _flag(attrs, self._keys.refusal)
        cost_usd, cost_source, unknown_reason = (None, None, None)
        if is_model_call:
            cost_usd, cost_source, unknown_reason = self._cost(
                attrs, request_model or response_model, response_model,
                input_tokens=input_tokens, output_tokens=output_tokens, cached=cached,
                is_error=error.is_error)
        return LLMSpan(
            trace_id=raw.trace_id,
            span_id=raw.span_id,
            parent_span_id=raw.parent_span_id,
            kind=kind,
            name=raw.name,
            start_unix_ns=raw.start_unix_ns,
            end_unix_ns=raw.end_unix_ns,
            context=context,
            operation=_operation(attrs, kind),
            provider=_provider(attrs),
            request_model=request_model,
            response_model=response_model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            reasoning_tokens=_first_int(attrs, REASONING_TOKEN_KEYS),
            time_to_first_token_s=_time_to_first_token(raw) if is_model_call else None,
            is_streaming=_streaming(attrs, invocation),
            finish_reasons=finish_reasons,
            is_error=error.is_error,
            error_kind=error.kind,
            error_type=error.error_type,
            http_status=error.http_status,
            is_refusal=bool(refusal) or any(r in _REFUSAL_REASONS for r in finish_reasons),
            is_cache_hit=_flag(attrs, self._keys.cache_hit),
            feedback=feedback_of(_first(attrs, self._keys.feedback)),
            is_regenerated=_flag(attrs, self._keys.regenerated),
            evals=span_eval_scores(raw),
            cost_usd=cost_usd,
            cost_source=cost_source,
            unknown_cost_reason=unknown_reason,
        )

    def _cost(self, attrs: Attributes, model: str | None, response_model: str | None, *,
              input_tokens: int | None, output_tokens: int | None, cached: int | None,
              is_error: bool) -> tuple[float | None, Literal["attribute", "pricing"] | None,
                                       str | None]:
        return self.cost_of(_first_float(attrs, self._keys.cost_usd), model, response_model,
                            input_tokens=input_tokens, output_tokens=output_tokens,
                            cached=cached, is_error=is_error)

    def cost_of(self, explicit: float | None, model: str | None, response_model: str | None, *,
                input_tokens: int | None, output_tokens: int | None, cached: int | None,
                is_error: bool) -> tuple[float | None, Literal["attribute", "pricing"] | None,
                                         str | None]:
        """Cost in USD, its source, and why it is unknown (explicit cost attribute first)."""
        if explicit is not None and explicit >= 0:
            return explicit, "attribute", None
        if input_tokens is None and output_tokens is None:
            # Providers do not bill a request that failed before producing usage.
            return (0.0, "pricing", None) if is_error else (None, None, "no_token_counts")
        if model is None:
            return None, None, "no_model"
        price = self._prices.price_of(model)
        if price is None and response_model is not None:
            price = self._prices.price_of(response_model)
        if price is None:
            return None, None, "unknown_model"
        return price.cost_usd(input_tokens or 0, output_tokens or 0, cached or 0), "pricing", None

    def context_of(self, attrs: Attributes, resource: Attributes) -> TraceContext:
        """Context fields from span attributes first, then resource attributes."""
        if resource is not self._resource:
            self._resource = resource
            self._resource_context = self._context(resource, {})
        if attrs.keys().isdisjoint(self._context_keys):
            return self._resource_context
        return self._context(attrs, resource)

    def _context(self, attrs: Attributes, resource: Attributes) -> TraceContext:
        values = []
        for names in self._context_names:
            value = _first_str(attrs, names)
            values.append(value if value is not None else _first_str(resource, names))
        user_id = values[6]
        if user_id is not None and self._config.hash_user_ids:
            values[6] = self.pseudonym(user_id)
        return TraceContext(*values)

    @property
    def prices(self) -> PriceTable:
        return self._prices

    @property
    def hashes_user_ids(self) -> bool:
        return self._config.hash_user_ids

    def pseudonym(self, user_id: str) -> str:
        """The keyed hash of a user id (cached: ids repeat)."""
        hashed = self._hashed.get(user_id)
        if hashed is None:
            if len(self._hashed) >= 10_000:  # bounded: a cache, not a user table
                self._hashed.clear()
            hashed = self._hashed[user_id] = hash_user_id(user_id, self._salt)
        return hashed

    # --- log records ---

    def normalise_log(self, raw: RawLog) -> Normalised:
        """A `gen_ai.evaluation.result` log event -> an `EvalResult`; other records -> nothing."""
        if raw.event_name != "gen_ai.evaluation.result" or raw.trace_id is None:
            return _NOTHING
        score = evaluation_event_score(raw.attributes)
        if score is None:
            return _NOTHING
        return Normalised(span=None, evals=(EvalResult(
            trace_id=raw.trace_id, span_id=raw.span_id, at_unix_ns=raw.time_unix_ns,
            score=score, context=self.context_of(raw.attributes, raw.resource)),))


# --- classification ---------------------------------------------------------------------------


def classify(raw: RawSpan) -> Classification | None:
    """Which kind of span this is for spanwatch, or None when it carries no metric."""
    attrs = raw.attributes
    kind = classify_marked(
        attrs.get("openinference.span.kind"), attrs.get("gen_ai.operation.name"),
        attrs.get("llm.request.type"),
        any(key in attrs for key in GENAI_MARKER_KEYS))
    if kind is not None:
        return kind
    if any(key.startswith("gen_ai.evaluation.") for key in attrs):
        return "evaluation"
    return classify_rest(attrs.get("db.system.name", attrs.get("db.system")),
                         raw.parent_span_id is None, raw.name, attrs)


GENAI_MARKER_KEYS = ("gen_ai.request.model", "gen_ai.system", "gen_ai.provider.name")


def classify_marked(oi_kind: AttrValue, operation: AttrValue, request_type: AttrValue,
                    has_genai_marker: bool) -> Classification | None:
    """`classify` by the dialect markers (the raw attribute values, None when absent)."""
    if isinstance(oi_kind, str):
        oi_kind = oi_kind.upper()
        if oi_kind in _OPENINFERENCE_KINDS:
            return _OPENINFERENCE_KINDS[oi_kind]  # type: ignore[return-value]
        if oi_kind == "EVALUATOR":
            return "evaluation"
    if isinstance(operation, str):
        if operation in _EMBEDDING_OPERATIONS:
            return "embedding"
        if operation in _RETRIEVAL_OPERATIONS:
            return "retrieval"
        if operation in LLM_OPERATIONS:
            return "llm"
    if isinstance(request_type, str) and request_type in _TRACELOOP_REQUEST_TYPES:
        return "embedding" if request_type == "embedding" else "llm"
    if has_genai_marker:
        return "llm"
    return None


def classify_rest(db_system: AttrValue, is_root: bool, name: str,
                  attrs: Attributes) -> Classification | None:
    """`classify` after the dialect markers and `gen_ai.evaluation.*` keys."""
    if isinstance(db_system, str) and db_system.lower() in _VECTOR_DB_SYSTEMS:
        return "retrieval"
    if is_root:
        return "request"
    if name.lower().startswith(("eval", "evaluation")) and any(
            key.startswith("eval.") for key in attrs):
        return "evaluation"
    return None


# --- field extraction --------------------------------------------------------------------------


def _first(attrs: Attributes, keys: Sequence[str]) -> AttrValue:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _first_str(attrs: Attributes, keys: Sequence[str]) -> str | None:
    return str_of(_first(attrs, keys))


def str_of(value: AttrValue) -> str | None:
    """A string field from the first non-empty attribute value (lists are no string)."""
    if value is None or isinstance(value, list):
        return None
    return str(value)


def _first_int(attrs: Attributes, keys: Sequence[str]) -> int | None:
    return int_of(_first(attrs, keys))


def int_of(value: AttrValue) -> int | None:
    """A count (>= 0) from an attribute value of any type, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():  # "¹".isdigit() too
        return int(value)
    return None


def _first_float(attrs: Attributes, keys: Sequence[str]) -> float | None:
    return float_of(_first(attrs, keys))


def float_of(value: AttrValue) -> float | None:
    """A number from an attribute value of any type (NaN and non-numbers are None)."""
    if isinstance(value, bool) or value is None or isinstance(value, list):
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return None if math.isnan(result) else result  # NaN is no cost


def _first_bool(attrs: Attributes, keys: Sequence[str]) -> bool | None:
    return as_bool(_first(attrs, keys))


def as_bool(value: AttrValue) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return None


def _flag(attrs: Attributes, keys: Sequence[str]) -> bool | None:
    return as_bool(_first(attrs, keys))


def _provider(attrs: Attributes) -> str | None:
    value = _first_str(attrs, PROVIDER_KEYS)
    return value.lower() if value else None


def _operation(attrs: Attributes, kind: SpanKind) -> str | None:
    return operation_of(_first_str(attrs, ("gen_ai.operation.name",)),
                        _first_str(attrs, ("llm.request.type",)), kind)


def operation_of(operation: str | None, request_type: str | None, kind: SpanKind) -> str | None:
    """The operation name: the GenAI attribute, else Traceloop's request type, else the kind's."""
    if operation:
        return operation
    if request_type in _TRACELOOP_REQUEST_TYPES:
        return _TRACELOOP_REQUEST_TYPES[request_type]
    return {"llm": "chat", "embedding": "embeddings", "retrieval": "retrieval"}.get(kind)


INVOCATION_KEYS = ("llm.invocation_parameters", "embedding.invocation_parameters")


def _invocation_parameters(attrs: Attributes) -> dict[str, object]:
    return invocation_parameters(*(attrs.get(key) for key in INVOCATION_KEYS))


def invocation_parameters(*values: AttrValue) -> dict[str, object]:
    """OpenInference keeps the requested model and the stream flag only inside the invocation
    parameters JSON (`llm.` for chat, `embedding.` for embeddings): the first JSON object of
    `values` (the attributes of INVOCATION_KEYS, in order), parsed; {} when there is none."""
    for params in values:
        if isinstance(params, str) and params.startswith("{"):
            return _parsed_invocation(params)
    return {}


_INVOCATIONS: dict[str, dict[str, object]] = {}
"""Parsed invocation parameters per JSON text (the same few texts repeat on every span),
bounded; the dicts are only read, never changed."""


def _parsed_invocation(params: str) -> dict[str, object]:
    parsed_dict = _INVOCATIONS.get(params)
    if parsed_dict is None:
        try:
            parsed = json.loads(params)
        except ValueError:
            parsed = {}
        parsed_dict = parsed if isinstance(parsed, dict) else {}
        if len(_INVOCATIONS) < 4096:
            _INVOCATIONS[params] = parsed_dict
    return parsed_dict


def _streaming(attrs: Attributes, invocation: dict[str, object]) -> bool | None:
    return streaming_of(_first_bool(attrs, STREAMING_KEYS), invocation)


def streaming_of(flag: bool | None, invocation: dict[str, object]) -> bool | None:
    """The stream flag attribute, else the invocation parameters' `stream`."""
    if flag is not None or not invocation:
        return flag
    # Recorded invocation parameters without "stream" mean the SDK default: not streaming.
    stream = invocation.get("stream", False)
    return stream if isinstance(stream, bool) else None


def invocation_model(params: dict[str, object]) -> str | None:
    model = params.get("model")
    return model if isinstance(model, str) and model else None


def _finish_reasons(attrs: Attributes) -> tuple[str, ...]:
    value = _first(attrs, FINISH_REASON_KEYS)
    if value is None:
        # OpenLLMetry writes one per choice: gen_ai.completion.<i>.finish_reason
        indexed = [v for k, v in attrs.items()
                   if k.startswith("gen_ai.completion.") and k.endswith(".finish_reason")]
        value = indexed or None
    return finish_reasons_of(value)


def finish_reasons_of(value: AttrValue) -> tuple[str, ...]:
    """Normalised finish reasons from an attribute value (one reason or a list)."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    reasons = []
    for item in items:
        if item is None or item == "":
            continue
        reason = str(item).strip().lower()
        reasons.append(_FINISH_REASON_ALIASES.get(reason, reason))
    return tuple(reasons)


def _time_to_first_token(raw: RawSpan) -> float | None:
    """Seconds from span start to the first streamed chunk; None when unknown, never 0."""
    explicit = _first_float(raw.attributes, TTFT_ATTRIBUTE_KEYS)
    if explicit is not None and explicit > 0:
        return explicit
    first = _first_event_time(raw.events)
    if first is None or first < raw.start_unix_ns:
        return None
    return (first - raw.start_unix_ns) / 1e9


def _first_event_time(events: Sequence[RawEvent]) -> int | None:
    times = [e.time_unix_ns for e in events if e.name in FIRST_CHUNK_EVENTS]
    return min(times) if times else None


def feedback_of(value: AttrValue) -> Literal["positive", "negative"] | None:
    if value is None or isinstance(value, list):
        return None
    if isinstance(value, bool):
        return "positive" if value else "negative"
    if isinstance(value, int | float):
        return "positive" if value > 0 else "negative"
    lowered = value.strip().lower()
    if lowered in _NEGATIVE_FEEDBACK:
        return "negative"
    if lowered in _POSITIVE_FEEDBACK:
        return "positive"
    return None


def span_eval_scores(raw: RawSpan) -> tuple[EvalScore, ...]:
    """Evaluations on the span: `eval.*` attributes, `gen_ai.evaluation.*` attributes and
    `gen_ai.evaluation.result` span events."""
    scores: dict[str, tuple[float | None, str | None]] = {}
    for key, value in raw.attributes.items():
        if not key.startswith("eval.") or value is None:
            continue
        name, _, field = key[5:].rpartition(".")
        if field not in ("score", "label", "value", "passed", "pass"):
            name, field = key[5:], ""
        score, label = scores.get(name, (None, None))
        if field == "label":
            label = str(value)
        elif field in ("passed", "pass") or isinstance(value, bool):
            passed = as_bool(value)
            label = label if passed is None else ("pass" if passed else "fail")
        elif isinstance(value, int | float):
            score = float(value)
        elif isinstance(value, str):
            try:
                score = float(value)
            except ValueError:
                label = value
        scores[name] = (score, label)
    result = [EvalScore(name=n, score=s, label=lab) for n, (s, lab) in scores.items() if n]
    own = evaluation_event_score(raw.attributes)
    if own is not None:
        result.append(own)
    for event in raw.events:
        if event.name == "gen_ai.evaluation.result":
            event_score = evaluation_event_score(event.attributes)
            if event_score is not None:
                result.append(event_score)
    return tuple(result)


EVALUATION_KEYS = ("gen_ai.evaluation.name", "gen_ai.evaluation.score.value",
                   "gen_ai.evaluation.score.label")
"""The attributes of a `gen_ai.evaluation.result` event that make its score, in the order
`evaluation_score` takes their values."""


def evaluation_event_score(attrs: Attributes) -> EvalScore | None:
    return evaluation_score(*(attrs.get(key) for key in EVALUATION_KEYS))


def evaluation_score(name: AttrValue, value: AttrValue, label: AttrValue) -> EvalScore | None:
    """The score of an evaluation event from its EVALUATION_KEYS attribute values (None when
    absent); None without a name."""
    name_text = str_of(name)
    if not name_text:
        return None
    label_text = str_of(label)
    return build_eval_score(name_text, float_of(value),
                            label_text.lower() if label_text else None)


def eval_passed(score: EvalScore, pass_threshold: float = 0.5) -> bool | None:
    """Pass/fail of an evaluation: its label when it is a pass/fail word, else the score
    against `pass_threshold`."""
    if score.label is not None:
        label = score.label.lower()
        if label in _PASS_LABELS:
            return True
        if label in _FAIL_LABELS:
            return False
    if score.score is not None:
        return score.score >= pass_threshold
    return None


def _as_dict(context: TraceContext) -> dict[str, str | None]:
    return {name: getattr(context, name) for name in TraceContext.__slots__}
