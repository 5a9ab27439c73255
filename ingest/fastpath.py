"""Fast path for `otlp_proto` trace messages: protobuf -> `LLMSpan`s in one walk, no raw dicts.

The generic path (`raw.py` -> `normalise.py`) first copies every attribute of every span into a
dict, then looks each field up under each dialect's names. Here each span's attributes are read
once: a key is looked up in a table of the keys the normaliser reads (built from the config), and
every other key - content keys included - is skipped without reading its value. The values land
in per-field slots with the priority of their key, so "first non-empty key in order" needs no
second pass. The conversions and decisions themselves are the normaliser's own functions.

Whatever is rare or irregular goes to the generic code, so results are identical by
construction (a differential test checks it on every fixture and on generated spans):
- a span with `eval.*` / `gen_ai.evaluation.*` attributes, OpenLLMetry's indexed
  `gen_ai.completion.<i>.finish_reason`, an OpenInference EVALUATOR, or a repeated key is
  normalised by the `Normaliser` from its full raw form;
- a message that does not parse, holds no spans or has a malformed id returns None, and the
  caller decodes it the generic way (so dead-letter reasons stay exactly the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingest.config import IngestConfig
from ingest.errors import ErrorInfo, classify_error
from ingest.normalise import (
    CACHED_TOKEN_KEYS,
    FINISH_REASON_KEYS,
    FIRST_CHUNK_EVENTS,
    GENAI_MARKER_KEYS,
    INPUT_TOKEN_KEYS,
    INVOCATION_KEYS,
    LLM_OPERATIONS,
    OUTPUT_TOKEN_KEYS,
    PROVIDER_KEYS,
    REASONING_TOKEN_KEYS,
    REQUEST_MODEL_KEYS,
    RESPONSE_MODEL_KEYS,
    STREAMING_KEYS,
    TTFT_ATTRIBUTE_KEYS,
    Classification,
    Normaliser,
    as_bool,
    classify_marked,
    classify_rest,
    evaluation_event_score,
    feedback_of,
    finish_reasons_of,
    float_of,
    int_of,
    invocation_model,
    invocation_parameters,
    operation_of,
    str_of,
    streaming_of,
)
from ingest.privacy import is_content_key
from ingest.raw import (
    STATUS_ERROR,
    Attributes,
    AttrValue,
    RawEvent,
    RawSpan,
    _proto_attrs,
    _proto_event,
    _proto_value,
)
from ingest.span import (
    EvalResult,
    EvalScore,
    LLMSpan,
    SpanKind,
    TraceContext,
    build_context,
    twin_of,
)

_REFUSAL_REASONS = frozenset({"content_filter", "refusal"})
_MODEL_CALLS = frozenset({"llm", "embedding"})

# Field slots. 0..8 are the TraceContext fields, in its order.
(F_PROVIDER, F_REQUEST_MODEL, F_RESPONSE_MODEL, F_INPUT, F_OUTPUT, F_CACHED, F_REASONING,
 F_STREAMING, F_FINISH, F_TTFT, F_COST, F_CACHE_HIT, F_FEEDBACK, F_REGENERATED, F_REFUSAL,
 F_OPERATION, F_REQUEST_TYPE) = range(9, 26)
N_FIELDS = 26
# Raw slots: the attribute value itself (empty or None included), as `attrs.get` would give.
(R_OI_KIND, R_OPERATION, R_REQUEST_TYPE, R_MARKER_REQUEST_MODEL, R_MARKER_SYSTEM,
 R_MARKER_PROVIDER, R_DB_SYSTEM_NAME, R_DB_SYSTEM, R_INVOCATION_LLM, R_INVOCATION_EMBEDDING,
 R_ERROR_TYPE, R_HTTP_STATUS, R_HTTP_STATUS_OLD) = range(N_FIELDS, N_FIELDS + 13)
N_RAW = 13
_RAW_KEYS = ("openinference.span.kind", "gen_ai.operation.name", "llm.request.type",
             *GENAI_MARKER_KEYS, "db.system.name", "db.system", *INVOCATION_KEYS,
             "error.type", "http.response.status_code", "http.status_code")
_ERROR_KEYS = ("error.type", "http.response.status_code", "http.status_code")

# How a value is read: the expected AnyValue field first (no WhichOneof); anything else,
# including an empty or zero value, goes through the generic `_proto_value`. So the value is
# the generic one whatever the hint; a right hint only saves the WhichOneof.
K_STR, K_INT, K_BOOL, K_ANY = 0, 1, 2, 3  # literals in ProtoFastPath._span

_COMMON_KEYS = {name: i for i, name in enumerate((
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.request.stream", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons", "error.type",
    "gen_ai.conversation.id", "http.route", "app.prompt_template_version", "app.user_segment",
    "session.id", "user.id", "app.user_feedback", "openinference.span.kind", "llm.system",
    "llm.provider", "llm.model_name", "llm.invocation_parameters", "llm.token_count.prompt",
    "llm.token_count.completion", "llm.finish_reason", "llm.prompt_template.version"))}
"""Keys of the OTel GenAI and OpenInference spans seen most (see `_KeyMap` bits)."""

_MISSING: Any = object()
_IGNORE: tuple[()] = ()
_FALLBACK = (-1, -1, K_ANY, 0, 0, ())
Entry = tuple[int, int, int, int, int, tuple[tuple[int, int], ...]]
"""(bit of the key for the repeated-key check, raw slot or _TRASH, value kind, first field and
its priority, further (field, priority)s). A key with no field has the dummy field N_FIELDS."""


class _KeyMap(dict[str, Entry | tuple[()]]):
    """Attribute key -> Entry; a key outside the table is learnt on first sight (a plain
    `keymap[key]` then costs no test for the common, known keys)."""

    def __missing__(self, key: str) -> Entry | tuple[()]:
        # Skipped, or a reason to take the generic path (keys the normaliser reads by prefix).
        entry: Entry | tuple[()] = _IGNORE
        if not is_content_key(key) and (
                key.startswith(("eval.", "gen_ai.evaluation."))
                or (key.startswith("gen_ai.completion.") and key.endswith(".finish_reason"))):
            entry = _FALLBACK
        if len(self) < 20_000:  # bounded: keys come from the traffic
            self[key] = entry
        return entry


class ProtoFastPath:
    """Decodes `ExportTraceServiceRequest` bytes with the normaliser's semantics, fast."""

    def __init__(self, config: IngestConfig, normaliser: Normaliser) -> None:
        self._normaliser = normaliser
        self._hash_users = normaliser.hashes_user_ids
        self._price_of = normaliser.prices.price_of
        keys = config.attributes
        by_field: list[tuple[int, Sequence[str], int]] = [
            (0, keys.service, K_STR), (1, keys.environment, K_STR),
            (2, keys.app_version, K_STR), (3, keys.prompt_template_version, K_STR),
            (4, keys.model_version, K_STR), (5, keys.session_id, K_STR),
            (6, keys.user_id, K_STR), (7, keys.user_segment, K_STR), (8, keys.endpoint, K_STR),
            (F_PROVIDER, PROVIDER_KEYS, K_STR), (F_REQUEST_MODEL, REQUEST_MODEL_KEYS, K_STR),
            (F_RESPONSE_MODEL, RESPONSE_MODEL_KEYS, K_STR), (F_INPUT, INPUT_TOKEN_KEYS, K_INT),
            (F_OUTPUT, OUTPUT_TOKEN_KEYS, K_INT), (F_CACHED, CACHED_TOKEN_KEYS, K_INT),
            (F_REASONING, REASONING_TOKEN_KEYS, K_INT), (F_STREAMING, STREAMING_KEYS, K_BOOL),
            (F_FINISH, FINISH_REASON_KEYS, K_ANY), (F_TTFT, TTFT_ATTRIBUTE_KEYS, K_ANY),
            (F_COST, keys.cost_usd, K_ANY), (F_CACHE_HIT, keys.cache_hit, K_ANY),
            (F_FEEDBACK, keys.feedback, K_ANY), (F_REGENERATED, keys.regenerated, K_ANY),
            (F_REFUSAL, keys.refusal, K_ANY), (F_OPERATION, ("gen_ai.operation.name",), K_STR),
            (F_REQUEST_TYPE, ("llm.request.type",), K_STR),
        ]
        targets: dict[str, list[tuple[int, int]]] = {}
        kinds: dict[str, set[int]] = {}
        for field_index, names, kind in by_field:
            seen: set[str] = set()
            for priority, name in enumerate(names):
                if name not in seen:  # a name listed twice counts at its first place
                    seen.add(name)
                    targets.setdefault(name, []).append((field_index, priority))
                    kinds.setdefault(name, set()).add(kind)
        for name in _RAW_KEYS:
            targets.setdefault(name, [])
            kinds.setdefault(name, set()).add(K_INT if "status_code" in name else K_STR)
        self._resources: dict[bytes,
                              tuple[Attributes, tuple[TraceContext, list[str | None]]]] = {}
        self._keymap = _KeyMap()
        # Common keys first: bits below 2**30 keep `seen` a one-digit int (cheaper & and |).
        ordered = sorted(targets, key=lambda k: (k not in _COMMON_KEYS, _COMMON_KEYS.get(k, 0)))
        for bit_index, name in enumerate(ordered):
            field_targets = targets[name]
            if is_content_key(name):
                continue  # dropped before the normaliser sees it, whatever the config says
            # Every kind reads the same value (see K_STR); the hint only decides what is tried
            # first, so any of the key's kinds will do.
            kind = min(kinds[name])
            raw_slot = N_FIELDS + _RAW_KEYS.index(name) if name in _RAW_KEYS else _TRASH
            # A raw-only key gets a dummy field target that can never be set (priority too low).
            first, *more = field_targets or [(N_FIELDS, _NO_PRIORITY)]
            self._keymap[name] = (1 << bit_index, raw_slot, kind, *first, tuple(more))
        self._reasons: dict[str | tuple[str], tuple[str, ...]] = {}

    def decode(self, value: bytes) -> tuple[list[LLMSpan], list[EvalResult], int] | None:
        """Spans, evaluations and the raw span count of one message; None when the message
        needs the generic path (unparseable, empty, malformed ids)."""
        try:
            request = ExportTraceServiceRequest.FromString(value)
        except Exception:  # noqa: BLE001 - the generic path names the problem
            return None
        spans: list[LLMSpan] = []
        evals: list[EvalResult] = []
        count = 0
        for entry in request.resource_spans:
            resource, resource_context = self._resource(entry.resource)
            for scope in entry.scope_spans:
                for span in scope.spans:
                    count += 1
                    if not self._span(span, resource, resource_context, spans, evals):
                        return None
        if count == 0:
            return None
        return spans, evals, count

    def _resource(self, resource: Any) -> tuple[Attributes,
                                                 tuple[TraceContext, list[str | None]]]:
        """A resource's attributes and context, cached by its encoding: the same few services'
        resources come in every message. (The attributes are only read, never changed.)"""
        key = resource.SerializeToString()
        found = self._resources.get(key)
        if found is None:
            attrs = _proto_attrs(resource.attributes)
            context = self._normaliser.context_of(_NO_ATTRIBUTES, attrs)
            found = attrs, (context, [getattr(context, name) for name in _CONTEXT_FIELDS])
            if len(self._resources) >= 10_000:  # bounded: a cache
                self._resources.clear()
            self._resources[key] = found
        return found

    def _span(self, span: Any, resource: Attributes,  # noqa: PLR0915 - flat: see docstring
              resource_context: tuple[TraceContext, list[str | None]],
              spans: list[LLMSpan], evals: list[EvalResult]) -> bool:
        """Normalise one span into `spans` / `evals`; False when the message's ids are bad.

        Written flat on purpose: this runs once per span, and each call or lookup saved here
        is throughput (see bench/decode_micro.py)."""
        trace_raw = span.trace_id
        span_raw = span.span_id
        parent_raw = span.parent_span_id
        if len(trace_raw) != 16 or len(span_raw) != 8 or (parent_raw and len(parent_raw) != 8):
            return False
        vals = _SLOTS.copy()  # fields (None) then raw values (_MISSING)
        prios = _PRIOS.copy()
        keymap = self._keymap
        seen = 0
        for kv in span.attributes:
            found = keymap[kv.key]
            if not found:
                continue  # not read by the normaliser, or content: dropped unread
            bit, raw_slot, value_kind, field_index, priority, more = found
            if bit < 0 or seen & bit:  # rare keys, or a repeated key: the generic path
                self._generic(span, resource, spans, evals)
                return True
            seen |= bit
            value_msg = kv.value
            if value_kind == 0:  # K_STR (literals: cheaper than global lookups here)
                value = value_msg.string_value or _proto_value(value_msg)
            elif value_kind == 1:  # K_INT
                value = value_msg.int_value or _proto_value(value_msg)
            elif value_kind == 2:  # K_BOOL
                value = value_msg.bool_value or _proto_value(value_msg)
            else:
                value = _proto_value(value_msg)
            vals[raw_slot] = value  # keys without a raw slot write to the trash slot
            if value is not None and value != "":
                if priority < prios[field_index]:
                    vals[field_index] = value
                    prios[field_index] = priority
                if more:
                    for field_index, priority in more:
                        if priority < prios[field_index]:
                            vals[field_index] = value
                            prios[field_index] = priority

        # --- classify (normalise.classify, same order) ---
        name = span.name
        oi_kind = vals[R_OI_KIND]
        operation = vals[R_OPERATION]
        if oi_kind is _MISSING and operation.__class__ is str and operation in LLM_OPERATIONS:
            kind: Classification | None = "llm"  # the common OTel GenAI case, short-cut
        elif oi_kind is _MISSING and operation is _MISSING and vals[R_REQUEST_TYPE] is _MISSING \
                and vals[R_MARKER_REQUEST_MODEL] is _MISSING and vals[R_MARKER_SYSTEM] is _MISSING \
                and vals[R_MARKER_PROVIDER] is _MISSING and vals[R_DB_SYSTEM_NAME] is _MISSING \
                and vals[R_DB_SYSTEM] is _MISSING:
            # No dialect marker at all (roots, tool and framework spans): `classify_rest`
            # without a database system or eval keys (those took the generic path).
            if parent_raw:
                return True  # no metric
            kind = "request"
        else:
            if oi_kind.__class__ is str and oi_kind.upper() == "EVALUATOR":
                self._generic(span, resource, spans, evals)
                return True
            request_type = vals[R_REQUEST_TYPE]
            kind = classify_marked(
                None if oi_kind is _MISSING else oi_kind,
                None if operation is _MISSING else operation,
                None if request_type is _MISSING else request_type,
                vals[R_MARKER_REQUEST_MODEL] is not _MISSING
                or vals[R_MARKER_SYSTEM] is not _MISSING
                or vals[R_MARKER_PROVIDER] is not _MISSING)
            if kind is None:
                db_system = vals[R_DB_SYSTEM_NAME]
                if db_system is _MISSING:
                    db_system = None if vals[R_DB_SYSTEM] is _MISSING else vals[R_DB_SYSTEM]
                kind = classify_rest(db_system, not parent_raw, name, _NO_ATTRIBUTES)
                if kind is None:
                    return True  # tool / framework span: no metric
            if kind == "evaluation":  # only from eval keys or an EVALUATOR: generic already
                self._generic(span, resource, spans, evals)
                return True

        # --- context (Normaliser.context_of) ---
        if prios[:9] == _NO_CONTEXT:
            context = resource_context[0]
        else:
            context = self._context(vals, prios, resource_context[1])
        if kind == "request" and context.endpoint is None:
            context = build_context(
                context.service, context.environment, context.app_version,
                context.prompt_template_version, context.model_version, context.session_id,
                context.user_id, context.user_segment, name or None)

        # --- events: first chunk, exceptions, evaluation results ---
        first_chunk: int | None = None
        exceptions: list[RawEvent] | None = None
        scores: tuple[EvalScore, ...] = ()
        for event in span.events:
            event_name = event.name
            if event_name in FIRST_CHUNK_EVENTS:
                at = event.time_unix_nano
                if first_chunk is None or at < first_chunk:
                    first_chunk = at
            elif event_name == "exception":
                if exceptions is None:
                    exceptions = []
                exceptions.append(_proto_event(event))
            elif event_name == "gen_ai.evaluation.result":
                score = evaluation_event_score(_proto_attrs(event.attributes))
                if score is not None:
                    scores = (*scores, score)

        # --- error (errors.classify_error) ---
        status = span.status
        status_code = status.code
        error_type = vals[R_ERROR_TYPE]
        if status_code != STATUS_ERROR and exceptions is None and (
                error_type is _MISSING or error_type is None or error_type == ""):
            is_error = False
            error_kind = error_type = http_status = None
        else:
            error = self._error(vals, status_code, status.message, exceptions)
            is_error, error_kind = error.is_error, error.kind
            error_type, http_status = error.error_type, error.http_status

        # --- fields (Normaliser._llm_span) ---
        start = span.start_time_unix_nano
        request_model = vals[F_REQUEST_MODEL]
        if request_model is not None and request_model.__class__ is not str:
            request_model = str_of(request_model)
        invocation: dict[str, object] | None = None
        if vals[R_INVOCATION_LLM] is not _MISSING or vals[R_INVOCATION_EMBEDDING] is not _MISSING:
            invocation = invocation_parameters(
                None if vals[R_INVOCATION_LLM] is _MISSING else vals[R_INVOCATION_LLM],
                None if vals[R_INVOCATION_EMBEDDING] is _MISSING
                else vals[R_INVOCATION_EMBEDDING])
            if not request_model:
                request_model = invocation_model(invocation)
        response_model = vals[F_RESPONSE_MODEL]
        if response_model is not None and response_model.__class__ is not str:
            response_model = str_of(response_model)
        input_tokens = vals[F_INPUT]
        if input_tokens is not None and not (input_tokens.__class__ is int and input_tokens >= 0):
            input_tokens = int_of(input_tokens)
        output_tokens = vals[F_OUTPUT]
        if output_tokens is not None and not (output_tokens.__class__ is int
                                              and output_tokens >= 0):
            output_tokens = int_of(output_tokens)
        cached = vals[F_CACHED]
        if cached is not None:
            cached = int_of(cached)
        reasoning = vals[F_REASONING]
        if reasoning is not None:
            reasoning = int_of(reasoning)
        finish = vals[F_FINISH]
        finish_reasons = () if finish is None else self._finish_reasons(finish)
        if kind == "llm" or kind == "embedding":  # noqa: PLR1714 - faster than a set here
            cost = vals[F_COST]
            model = request_model or response_model
            if cost is None and (input_tokens is not None or output_tokens is not None) \
                    and model:
                # The common case, inline: priced from the table (Normaliser.cost_of).
                price = self._price_of(model)
                if price is None and response_model is not None:
                    price = self._price_of(response_model)
                if price is None:
                    cost_usd, cost_source, unknown_reason = None, None, "unknown_model"
                else:
                    cost_usd = price.cost_usd(input_tokens or 0, output_tokens or 0, cached or 0)
                    cost_source, unknown_reason = "pricing", None
            else:
                cost_usd, cost_source, unknown_reason = self._normaliser.cost_of(
                    None if cost is None else float_of(cost), request_model or response_model,
                    response_model, input_tokens=input_tokens, output_tokens=output_tokens,
                    cached=cached, is_error=is_error)
            ttft = vals[F_TTFT]
            if ttft is not None:
                ttft = float_of(ttft)
            if ttft is None or not ttft > 0:
                ttft = None if first_chunk is None or first_chunk < start \
                    else (first_chunk - start) / 1e9
        else:
            cost_usd = cost_source = unknown_reason = ttft = None
        provider = vals[F_PROVIDER]
        if provider is not None:
            if provider.__class__ is not str:
                provider = str_of(provider)
            provider = provider.lower() if provider else None
        operation = vals[F_OPERATION]
        if operation is None or operation.__class__ is not str:
            operation = operation_of(str_of(operation), str_of(vals[F_REQUEST_TYPE]),
                                     cast("SpanKind", kind))  # evaluation and None left above
        streaming = vals[F_STREAMING]
        if streaming is not None and streaming.__class__ is not bool:
            streaming = as_bool(streaming)
        if invocation:
            streaming = streaming_of(streaming, invocation)
        refusal = vals[F_REFUSAL]
        is_refusal = bool(as_bool(refusal)) if refusal is not None else False
        if not is_refusal and finish_reasons:
            is_refusal = any(r in _REFUSAL_REASONS for r in finish_reasons)
        cache_hit = vals[F_CACHE_HIT]
        if cache_hit is not None and cache_hit.__class__ is not bool:
            cache_hit = as_bool(cache_hit)
        feedback = vals[F_FEEDBACK]
        if feedback is not None:
            feedback = feedback_of(feedback)
        regenerated = vals[F_REGENERATED]
        if regenerated is not None and regenerated.__class__ is not bool:
            regenerated = as_bool(regenerated)
        record = _LLMSpanTwin(
            trace_raw.hex(), span_raw.hex(), parent_raw.hex() if parent_raw else None, kind,
            name, start, span.end_time_unix_nano, context, operation, provider, request_model,
            response_model, input_tokens, output_tokens, cached, reasoning, ttft, streaming,
            finish_reasons, is_error, error_kind, error_type, http_status, is_refusal,
            cache_hit, feedback, regenerated, scores, cost_usd, cost_source, unknown_reason)
        record.__class__ = LLMSpan  # see span.fast_builder
        spans.append(record)
        return True

    def _finish_reasons(self, value: AttrValue) -> tuple[str, ...]:
        """`finish_reasons_of`, cached for the shapes that repeat ("stop", ["stop"]); keyed by
        strings only, since 1 == True == 1.0 as dict keys but not as reasons."""
        key: str | tuple[str]
        if value.__class__ is str:
            key = value
        elif value.__class__ is list and len(value) == 1 and value[0].__class__ is str:
            key = (value[0],)
        else:
            return finish_reasons_of(value)
        found = self._reasons.get(key)
        if found is None:
            found = finish_reasons_of(value)
            if len(self._reasons) < 1000:
                self._reasons[key] = found
        return found

    def _error(self, vals: list[Any], status_code: int, status_message: str,
               exceptions: list[RawEvent] | None) -> ErrorInfo:
        """errors.classify_error on the attributes it reads."""
        error_attrs: Attributes = {
            key: vals[slot] for key, slot in _ERROR_SLOTS if vals[slot] is not _MISSING}
        return classify_error(RawSpan(
            trace_id="", span_id="", parent_span_id=None, name="", kind=0, start_unix_ns=0,
            end_unix_ns=0, status_code=status_code, status_message=status_message,
            attributes=error_attrs, resource={}, events=exceptions or []))

    def _context(self, vals: list[Any], prios: list[int],
                 resource_values: list[str | None]) -> TraceContext:
        """Context with the span's own values over its resource's (Normaliser._context; the
        resource's user id is already hashed when hashing is on)."""
        values = resource_values.copy()
        for index in range(9):
            if prios[index] != _NO_PRIORITY:
                value = vals[index]
                text = value if value.__class__ is str else str_of(value)
                if text is not None:
                    values[index] = text if index != 6 or not self._hash_users \
                        else self._normaliser.pseudonym(text)
        return build_context(*values)

    def _generic(self, span: Any, resource: Attributes, spans: list[LLMSpan],
                 evals: list[EvalResult]) -> None:
        """The span through the generic raw form and `Normaliser` (rare attribute shapes)."""
        parent_raw = span.parent_span_id
        raw_span = RawSpan(
            trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
            parent_span_id=parent_raw.hex() if parent_raw else None, name=span.name,
            kind=int(span.kind), start_unix_ns=int(span.start_time_unix_nano),
            end_unix_ns=int(span.end_time_unix_nano), status_code=int(span.status.code),
            status_message=span.status.message, attributes=_proto_attrs(span.attributes),
            resource=resource, events=[_proto_event(e) for e in span.events])
        result = self._normaliser.normalise_span(raw_span)
        if result.span is not None:
            spans.append(result.span)
        evals.extend(result.evals)


_NO_ATTRIBUTES: Attributes = {}
_NO_PRIORITY = 1 << 30
_NO_CONTEXT = [_NO_PRIORITY] * 9
_TRASH = N_FIELDS + N_RAW
_SLOTS: list[Any] = [None] * N_FIELDS + [_MISSING] * N_RAW + [None]  # + the trash slot
_PRIOS = [_NO_PRIORITY] * (N_FIELDS + 1)  # + the dummy field of raw-only keys
_ERROR_SLOTS = tuple(zip(_ERROR_KEYS, (R_ERROR_TYPE, R_HTTP_STATUS, R_HTTP_STATUS_OLD),
                         strict=True))
_LLMSpanTwin: Any = twin_of(LLMSpan)
_CONTEXT_FIELDS = TraceContext.__slots__
