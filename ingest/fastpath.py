"""Fast path for `otlp_proto` trace messages: protobuf -> `LLMSpan`s in one walk, no raw dicts.

The generic path (`raw.py` -> `normalise.py`) first copies every attribute of every span into a
dict, then looks each field up under each dialect's names. Here the request is parsed with a
twin of the OTLP schema in which a span's attributes (and a resource) are plain `bytes`: each
encoded `KeyValue` is looked up in a cache of the attributes seen before (the same few keys and
values come on every span: models, operations, services, routes), whose entry says which
fields the attribute sets, with the value already converted as each field wants it. An attribute
not in the cache is parsed once (`_key_value`, checked as protobuf checks it) and learnt. The
values land in per-field slots with the priority of their key, so "first non-empty key in order"
needs no second pass. The conversions and decisions are the normaliser's own functions.

Whatever is rare or irregular goes to the generic code, so results are identical by
construction (a differential test checks it on every fixture and on generated spans):
- a span with `eval.*` / `gen_ai.evaluation.*` attributes, OpenLLMetry's indexed
  `gen_ai.completion.<i>.finish_reason`, an OpenInference EVALUATOR, or a repeated key is
  normalised by the `Normaliser` from its full raw form;
- a message that does not parse, holds no spans, has a malformed id, an attribute or resource
  that the real schema rejects (bad UTF-8, too deep) or a repeated resource field returns None,
  and the caller decodes it the generic way (so dead-letter reasons stay exactly the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingest.config import IngestConfig
from ingest.errors import ErrorInfo, classify_error
from ingest.normalise import (
    CACHED_TOKEN_KEYS,
    EVALUATION_KEYS,
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
    evaluation_score,
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
_KIND_OPERATIONS: dict[str, str | None] = {
    "llm": "chat", "embedding": "embeddings", "retrieval": "retrieval", "request": None}
"""`operation_of(None, None, kind)` for the kinds that reach the record."""

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
_MARKER_KEYS = _RAW_KEYS[:8]
"""The keys `classify` looks at before the span's name (dialect markers, database system)."""
_ERROR_KEYS = ("error.type", "http.response.status_code", "http.status_code")

_COMMON_KEYS = {name: i for i, name in enumerate((
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.request.stream", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons", "error.type",
    "gen_ai.conversation.id", "http.route", "app.prompt_template_version", "app.user_segment",
    "session.id", "user.id", "app.user_feedback", "openinference.span.kind", "llm.system",
    "llm.provider", "llm.model_name", "llm.invocation_parameters", "llm.token_count.prompt",
    "llm.token_count.completion", "llm.finish_reason", "llm.prompt_template.version"))}
"""Keys of the OTel GenAI and OpenInference spans seen most (their bits come first)."""

KeyInfo = tuple[int, int, tuple[tuple[int, int], ...]]
"""What a key does: (its bit for the repeated-key check, raw slot or _TRASH, the (field,
priority)s it fills)."""
KvEntry = tuple[int, int, AttrValue, int, int, Any, tuple[tuple[int, int, Any], ...]]
"""What one encoded attribute does: (bit, raw slot, raw value, first field, its priority, the
value converted for that field, further (field, priority, converted value)s). An empty value,
or a key without a field, has the dummy field N_FIELDS that is never set."""

_IGNORE: tuple[()] = ()
_FALLBACK: KeyInfo = (-1, -1, ())
"""Keys the normaliser reads by prefix: the span takes the generic path."""
Resource = tuple[Attributes, TraceContext, list[str | None]]
"""A resource's attributes, its context and that context's field values."""


class _KeyMap(dict[str, KeyInfo | tuple[()]]):
    """Attribute key -> KeyInfo; a key outside the table is learnt on first sight."""

    def __missing__(self, key: str) -> KeyInfo | tuple[()]:
        # Skipped, or a reason to take the generic path (keys the normaliser reads by prefix).
        entry: KeyInfo | tuple[()] = _IGNORE
        if not is_content_key(key) and (
                key.startswith(("eval.", "gen_ai.evaluation."))
                or (key.startswith("gen_ai.completion.") and key.endswith(".finish_reason"))):
            entry = _FALLBACK
        if len(self) < 20_000:  # bounded: keys come from the traffic
            self[key] = entry
        return entry


# --- the wire form ----------------------------------------------------------------------------


def _bytes_schema() -> Any:
    """`ExportTraceServiceRequest` with `Span.attributes` as `repeated bytes` and
    `ResourceSpans.resource` as `repeated bytes` (same wire format: length-delimited), in a
    pool of its own. Parsing it leaves each attribute as its encoded bytes, the cache key, and
    makes no Python object per attribute; a repeated resource field, which protobuf would
    merge, shows as two items."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: Any) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        for message in proto.message_type:
            for field in message.field:
                if (message.name, field.name) in (("Span", "attributes"),
                                                  ("ResourceSpans", "resource")):
                    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    field.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                    field.ClearField("type_name")
        pool.Add(proto)
        added.add(file.name)

    add(trace_service_pb2.DESCRIPTOR)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(ExportTraceServiceRequest.DESCRIPTOR.full_name))


_BytesRequest: Any = _bytes_schema()


def _length_delimited(tag: int, payload: bytes) -> bytes:
    """`payload` as a length-delimited field with the (one-byte) `tag`."""
    size = len(payload)
    head = bytearray((tag,))
    while size >= 0x80:
        head.append((size & 0x7F) | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + payload


def _in_span_attribute(encoded: bytes) -> bytes:
    """A request holding `encoded` as the one attribute of one span, at the depth it had."""
    span = _length_delimited(0x4A, encoded)  # Span.attributes = 9
    scope = _length_delimited(0x12, span)  # ScopeSpans.spans = 2
    resource_spans = _length_delimited(0x12, scope)  # ResourceSpans.scope_spans = 2
    return _length_delimited(0x0A, resource_spans)  # ExportTraceServiceRequest.resource_spans = 1


def _parsed_key_value(encoded: bytes) -> tuple[str, AttrValue] | None:
    """Key and value of an encoded span attribute, parsed by protobuf where the real request
    holds it (so bad UTF-8 and the nesting limit fail here as they fail there); None when it
    fails."""
    try:
        request = ExportTraceServiceRequest.FromString(_in_span_attribute(encoded))
    except Exception:  # noqa: BLE001 - the generic path names the problem
        return None
    kv = request.resource_spans[0].scope_spans[0].spans[0].attributes[0]
    return kv.key, _proto_value(kv.value)


def _parsed_resource(encoded: bytes) -> Attributes | None:
    """A resource's attributes, as `_proto_attrs` reads them from the real request."""
    try:
        request = ExportTraceServiceRequest.FromString(
            _length_delimited(0x0A, _length_delimited(0x0A, encoded)))
    except Exception:  # noqa: BLE001
        return None
    return _proto_attrs(request.resource_spans[0].resource.attributes)


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A canonical varint of at most 9 bytes at `pos` (value, next position); (-1, -1) for
    anything else, which callers treat as "not simple"."""
    value = shift = 0
    while pos < end and shift < 63:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                break  # non-canonical: let protobuf read it
            return value, pos
        shift += 7
    return -1, -1


def _simple_key_value(data: bytes) -> tuple[str, AttrValue] | None:
    """Key and value of an attribute encoded the way every SDK encodes the common ones: key,
    then a value holding one string, bool or non-negative int (or nothing), each field once,
    canonical lengths, valid UTF-8. None for any other encoding (then protobuf parses it):
    this is a shortcut for new values (token counts, ids), never a second parser."""
    end = len(data)
    if end < 2 or data[0] != 0x0A:
        return None
    size, pos = _varint(data, 1, end)
    key_end = pos + size
    if size < 0 or key_end > end:
        return None
    try:
        key = data[pos:key_end].decode()
    except UnicodeDecodeError:
        return None
    if key_end == end:
        return key, None  # no value: an empty AnyValue
    if data[key_end] != 0x12:
        return None
    size, pos = _varint(data, key_end + 1, end)
    if size < 0 or pos + size != end:
        return None
    if size == 0:
        return key, None
    tag = data[pos]
    if tag == 0x0A:  # string_value
        size, pos = _varint(data, pos + 1, end)
        if size < 0 or pos + size != end:
            return None
        try:
            return key, data[pos:end].decode()
        except UnicodeDecodeError:
            return None
    if tag == 0x18:  # int_value
        number, pos = _varint(data, pos + 1, end)
        return (key, number) if number >= 0 and pos == end else None
    if tag == 0x10 and size == 2 and data[end - 1] < 2:  # bool_value
        return key, data[end - 1] == 1
    return None


def _event_score(kvs: Any) -> EvalScore | None:
    """`evaluation_event_score(_proto_attrs(kvs))` reading only the keys it needs (none of them
    is content; a repeated key counts at its last place, as in the dict)."""
    name = value = label = None
    for kv in kvs:
        key = kv.key
        if key == _EVAL_NAME:
            name = _proto_value(kv.value)
        elif key == _EVAL_VALUE:
            value = _proto_value(kv.value)
        elif key == _EVAL_LABEL:
            label = _proto_value(kv.value)
    return evaluation_score(name, value, label)


_EVAL_NAME, _EVAL_VALUE, _EVAL_LABEL = EVALUATION_KEYS


# --- the fast path ----------------------------------------------------------------------------


class ProtoFastPath:
    """Decodes `ExportTraceServiceRequest` bytes with the normaliser's semantics, fast."""

    KV_CACHE_SIZE = 16_384
    """Encoded attributes remembered (cleared when full: it is a cache of what repeats, and
    the hot entries are learnt again within a few messages). At most ~10 MB."""
    KV_CACHE_MAX_BYTES = 512
    """Longer encoded attributes are not remembered (long values rarely repeat)."""

    def __init__(self, config: IngestConfig, normaliser: Normaliser) -> None:
        self._normaliser = normaliser
        self._price_of = normaliser.prices.price_of
        keys = config.attributes
        by_field: list[tuple[int, Sequence[str]]] = [
            (0, keys.service), (1, keys.environment), (2, keys.app_version),
            (3, keys.prompt_template_version), (4, keys.model_version), (5, keys.session_id),
            (6, keys.user_id), (7, keys.user_segment), (8, keys.endpoint),
            (F_PROVIDER, PROVIDER_KEYS), (F_REQUEST_MODEL, REQUEST_MODEL_KEYS),
            (F_RESPONSE_MODEL, RESPONSE_MODEL_KEYS), (F_INPUT, INPUT_TOKEN_KEYS),
            (F_OUTPUT, OUTPUT_TOKEN_KEYS), (F_CACHED, CACHED_TOKEN_KEYS),
            (F_REASONING, REASONING_TOKEN_KEYS), (F_STREAMING, STREAMING_KEYS),
            (F_FINISH, FINISH_REASON_KEYS), (F_TTFT, TTFT_ATTRIBUTE_KEYS),
            (F_COST, keys.cost_usd), (F_CACHE_HIT, keys.cache_hit),
            (F_FEEDBACK, keys.feedback), (F_REGENERATED, keys.regenerated),
            (F_REFUSAL, keys.refusal), (F_OPERATION, ("gen_ai.operation.name",)),
            (F_REQUEST_TYPE, ("llm.request.type",)),
        ]
        targets: dict[str, list[tuple[int, int]]] = {}
        for field_index, names in by_field:
            seen: set[str] = set()
            for priority, name in enumerate(names):
                if name not in seen:  # a name listed twice counts at its first place
                    seen.add(name)
                    targets.setdefault(name, []).append((field_index, priority))
        for name in _RAW_KEYS:
            targets.setdefault(name, [])
        self._keymap = _KeyMap()
        self._context_bits = self._marker_bits = 0
        # Common keys first: small bits keep `seen` a one-digit int (cheaper & and |). Bit 0 is
        # always set in `seen`, so the fallback's bit -1 always hits.
        ordered = sorted(targets, key=lambda k: (k not in _COMMON_KEYS, _COMMON_KEYS.get(k, 0)))
        for bit_index, name in enumerate(ordered, start=1):
            if is_content_key(name):
                continue  # dropped before the normaliser sees it, whatever the config says
            bit = 1 << bit_index
            raw_slot = N_FIELDS + _RAW_KEYS.index(name) if name in _RAW_KEYS else _TRASH
            self._keymap[name] = (bit, raw_slot, tuple(targets[name]))
            if any(field_index < 9 for field_index, _ in targets[name]):
                self._context_bits |= bit
            if name in _MARKER_KEYS:
                self._marker_bits |= bit
        self._converters = self._field_converters(normaliser)
        self._kvs: dict[bytes, KvEntry | tuple[()]] = {}
        self._resources: dict[bytes, Resource] = {}
        self._last_ids: tuple[bytes, str, bytes, str | None] = (b"", "", b"", None)
        """The previous record's raw trace and parent ids and their hex: see `_span`."""

    @staticmethod
    def _field_converters(normaliser: Normaliser) -> list[Callable[[AttrValue], Any]]:
        """Per field, the normaliser's conversion of the winning raw value (all pure, so an
        attribute's converted values can be cached with it)."""
        def user(value: AttrValue) -> str | None:
            text = str_of(value)
            return normaliser.pseudonym(text) if text is not None else None

        def provider(value: AttrValue) -> str | None:
            text = str_of(value)
            return text.lower() if text else None

        def refusal(value: AttrValue) -> bool:
            return bool(as_bool(value))

        converters: list[Callable[[AttrValue], Any]] = [str_of] * (N_FIELDS + 1)
        if normaliser.hashes_user_ids:
            converters[6] = user
        converters[F_PROVIDER] = provider
        for index in (F_INPUT, F_OUTPUT, F_CACHED, F_REASONING):
            converters[index] = int_of
        for index in (F_STREAMING, F_CACHE_HIT, F_REGENERATED):
            converters[index] = as_bool
        converters[F_REFUSAL] = refusal
        converters[F_FINISH] = finish_reasons_of
        converters[F_TTFT] = converters[F_COST] = float_of
        converters[F_FEEDBACK] = feedback_of
        return converters

    def decode(self, value: bytes) -> tuple[list[LLMSpan], list[EvalResult], int] | None:
        """Spans, evaluations and the raw span count of one message; None when the message
        needs the generic path (unparseable, empty, malformed ids or attributes)."""
        try:
            request = _BytesRequest.FromString(value)
        except Exception:  # noqa: BLE001 - the generic path names the problem
            return None
        spans: list[LLMSpan] = []
        evals: list[EvalResult] = []
        count = 0
        # Repeated fields are iterated as `[:]` slices: upb builds the list in C; a plain `for`
        # over the container takes about 1.4x as long per item (timeit, 8 span attributes).
        span_of = self._span
        for entry in request.resource_spans[:]:
            resource = self._resource(entry.resource)
            if resource is None:
                return None
            for scope in entry.scope_spans[:]:
                for span in scope.spans[:]:
                    count += 1
                    if not span_of(span, resource, spans, evals):
                        return None
        if count == 0:
            return None
        return spans, evals, count

    def _resource(self, encoded: Sequence[bytes]
                  ) -> Resource | None:
        """A resource's attributes and context, cached by its encoding: the same few services'
        resources come in every message. (The attributes are only read, never changed.)"""
        if len(encoded) > 1:
            return None  # protobuf merges repeated resource fields: rare, the generic path
        key = encoded[0] if encoded else b""
        found = self._resources.get(key)
        if found is None:
            attrs = _parsed_resource(key)
            if attrs is None:
                return None
            context = self._normaliser.context_of(_NO_ATTRIBUTES, attrs)
            found = (attrs, context, [getattr(context, name) for name in _CONTEXT_FIELDS])
            if len(self._resources) >= 10_000:  # bounded: a cache
                self._resources.clear()
            self._resources[key] = found
        return found

    def _key_value(self, encoded: bytes) -> tuple[str, AttrValue] | None:
        """Key and value of an encoded span attribute; None when protobuf rejects it."""
        return _simple_key_value(encoded) or _parsed_key_value(encoded)

    def _learn(self, encoded: bytes) -> KvEntry | tuple[()] | None:
        """The cache entry of an encoded attribute not seen before (None: invalid)."""
        pair = self._key_value(encoded)
        if pair is None:
            return None
        key, raw = pair
        info = self._keymap[key]
        entry: KvEntry | tuple[()]
        if not info:
            entry = _IGNORE
            if _CONTENT_KEYS.get(key, True) and is_content_key(key):
                return entry  # never remembered: content stays out of every cache
            if len(_CONTENT_KEYS) < 10_000:
                _CONTENT_KEYS[key] = False
        elif info is _FALLBACK:
            entry = _FALLBACK_ENTRY
        else:
            bit, raw_slot, field_targets = info
            converted: list[tuple[int, int, Any]] = [(N_FIELDS, _NO_PRIORITY, None)]
            if raw is not None and raw != "" and field_targets:
                converted = [(field_index, priority, self._converters[field_index](raw))
                             for field_index, priority in field_targets]
            entry = (bit, raw_slot, raw, *converted[0], tuple(converted[1:]))
        if len(encoded) <= self.KV_CACHE_MAX_BYTES:
            if len(self._kvs) >= self.KV_CACHE_SIZE:
                self._kvs.clear()
            self._kvs[encoded] = entry
        return entry

    def _span(self, span: Any,  # noqa: PLR0915 - flat: see docstring
              resource: Resource,
              spans: list[LLMSpan], evals: list[EvalResult]) -> bool:
        """Normalise one span into `spans` / `evals`; False when the message needs the generic
        path (bad ids, an attribute protobuf rejects).

        Written flat on purpose: this runs once per span, and each call or lookup saved here
        is throughput (see bench/decode_micro.py)."""
        trace_raw = span.trace_id
        span_raw = span.span_id
        parent_raw = span.parent_span_id
        if len(trace_raw) != 16 or len(span_raw) != 8 or (parent_raw and len(parent_raw) != 8):
            return False
        vals = _SLOTS.copy()  # fields (None) then raw values (_MISSING)
        prios = _PRIOS.copy()
        kvs = self._kvs
        seen = 1
        for encoded in span.attributes[:]:  # a slice: see `decode`
            try:
                found = kvs[encoded]
            except KeyError:  # new to the cache (a plain [] is cheaper than .get per hit)
                learnt = self._learn(encoded)
                if learnt is None:
                    return False
                found = learnt
            if not found:
                continue  # not read by the normaliser, or content: dropped unread
            bit, raw_slot, raw, field_index, priority, value, more = found
            if seen & bit:  # rare keys (bit -1), or a repeated key: the generic path
                return self._generic(span, resource[0], spans, evals)
            seen |= bit
            vals[raw_slot] = raw  # keys without a raw slot write to the trash slot
            if priority < prios[field_index]:
                vals[field_index] = value
                prios[field_index] = priority
            if more:
                for field_index, priority, value in more:
                    if priority < prios[field_index]:
                        vals[field_index] = value
                        prios[field_index] = priority

        # The slots by name, in slot order (test_fastpath_wire checks the layout).
        (service, environment, app_version, template_version, model_version, session_id,
         user_id, user_segment, endpoint, provider, request_model, response_model, input_tokens,
         output_tokens, cached, reasoning, streaming, finish_reasons, ttft, cost, cache_hit,
         feedback, regenerated, refusal, operation, request_type, oi_kind, raw_operation,
         raw_request_type, marker_model, marker_system, marker_provider, db_system_name,
         db_system, invocation_llm, invocation_embedding, error_type, _, _, _) = vals

        # --- classify (normalise.classify, same order) ---
        name = span.name
        if oi_kind is _MISSING and raw_operation.__class__ is str \
                and raw_operation in LLM_OPERATIONS:
            kind: Classification | None = "llm"  # the common OTel GenAI case, short-cut
        elif not seen & self._marker_bits:
            # No dialect marker at all (roots, tool and framework spans): `classify_rest`
            # without a database system or eval keys (those took the generic path).
            if parent_raw:
                return True  # no metric
            kind = "request"
        else:
            if oi_kind.__class__ is str and oi_kind.upper() == "EVALUATOR":
                return self._generic(span, resource[0], spans, evals)
            kind = classify_marked(
                None if oi_kind is _MISSING else oi_kind,
                None if raw_operation is _MISSING else raw_operation,
                None if raw_request_type is _MISSING else raw_request_type,
                marker_model is not _MISSING or marker_system is not _MISSING
                or marker_provider is not _MISSING)
            if kind is None:
                if db_system_name is not _MISSING:
                    db_system = db_system_name
                elif db_system is _MISSING:
                    db_system = None
                kind = classify_rest(db_system, not parent_raw, name, _NO_ATTRIBUTES)
                if kind is None:
                    return True  # tool / framework span: no metric
            if kind == "evaluation":  # only from eval keys or an EVALUATOR: generic already
                return self._generic(span, resource[0], spans, evals)

        # --- context (Normaliser.context_of; a request's endpoint defaults to its name) ---
        if seen & self._context_bits:
            # The span's values over its resource's: a value is None where the resource's
            # stands (unset, or not a string); user ids are hashed already.
            values = resource[2]
            context = _TraceContextTwin(
                values[0] if service is None else service,
                values[1] if environment is None else environment,
                values[2] if app_version is None else app_version,
                values[3] if template_version is None else template_version,
                values[4] if model_version is None else model_version,
                values[5] if session_id is None else session_id,
                values[6] if user_id is None else user_id,
                values[7] if user_segment is None else user_segment,
                values[8] if endpoint is None else endpoint)
            context.__class__ = TraceContext  # see span.fast_builder
        else:
            context = resource[1]
        if kind == "request" and context.endpoint is None:
            context = build_context(
                context.service, context.environment, context.app_version,
                context.prompt_template_version, context.model_version, context.session_id,
                context.user_id, context.user_segment, name or None)

        # --- events: first chunk, exceptions, evaluation results ---
        first_chunk: int | None = None
        exceptions: list[RawEvent] | None = None
        scores: tuple[EvalScore, ...] = ()
        events = span.events
        for event in events[:] if events else _IGNORE:  # most spans have none: no slice
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
                score = _event_score(event.attributes)
                if score is not None:
                    scores = (*scores, score)

        # --- error (errors.classify_error) ---
        status = span.status
        status_code = status.code
        if status_code != STATUS_ERROR and exceptions is None and (
                error_type is _MISSING or error_type is None or error_type == ""):
            is_error = False
            error_kind = error_type = http_status = None
        else:
            error = self._error(vals, status_code, status.message, exceptions)
            is_error, error_kind = error.is_error, error.kind
            error_type, http_status = error.error_type, error.http_status

        # --- fields (Normaliser._llm_span; values already converted per field) ---
        start = span.start_time_unix_nano
        if invocation_llm is not _MISSING or invocation_embedding is not _MISSING:
            invocation = invocation_parameters(
                None if invocation_llm is _MISSING else invocation_llm,
                None if invocation_embedding is _MISSING else invocation_embedding)
            if not request_model:
                request_model = invocation_model(invocation)
            if invocation:
                streaming = streaming_of(streaming, invocation)
        if finish_reasons is None:
            finish_reasons = ()
        if kind == "llm" or kind == "embedding":  # noqa: PLR1714 - faster than a set here
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
                    cost, model, response_model, input_tokens=input_tokens,
                    output_tokens=output_tokens, cached=cached, is_error=is_error)
            if ttft is None or not ttft > 0:
                ttft = None if first_chunk is None or first_chunk < start \
                    else (first_chunk - start) / 1e9
        else:
            cost_usd = cost_source = unknown_reason = ttft = None
        if not operation:
            operation = _KIND_OPERATIONS[cast("SpanKind", kind)] if request_type is None \
                else operation_of(None, request_type, cast("SpanKind", kind))
        is_refusal = refusal is True
        if not is_refusal and finish_reasons:
            is_refusal = not _REFUSAL_REASONS.isdisjoint(finish_reasons)
        # The spans of a trace come together, a parent right after its children (as SDKs and
        # the collector batch them): ids equal to the previous record's reuse its hex strings
        # (equal values, shared: less to allocate, hash and free per record).
        last_trace_raw, trace_id, last_parent_raw, parent_id = self._last_ids
        if trace_raw != last_trace_raw:
            trace_id = trace_raw.hex()
        span_id = parent_id if span_raw == last_parent_raw else span_raw.hex()
        if parent_raw != last_parent_raw:
            parent_id = parent_raw.hex() if parent_raw else None
        self._last_ids = (trace_raw, trace_id, parent_raw, parent_id)
        record = _LLMSpanTwin(
            trace_id, span_id, parent_id, kind,
            name, start, span.end_time_unix_nano, context, operation, provider, request_model,
            response_model, input_tokens, output_tokens, cached, reasoning, ttft, streaming,
            finish_reasons, is_error, error_kind, error_type, http_status, is_refusal, cache_hit,
            feedback, regenerated, scores, cost_usd, cost_source, unknown_reason)
        record.__class__ = LLMSpan  # see span.fast_builder
        spans.append(record)
        return True

    def _error(self, vals: list[Any], status_code: int, status_message: str,
               exceptions: list[RawEvent] | None) -> ErrorInfo:
        """errors.classify_error on the attributes it reads."""
        error_attrs: Attributes = {
            key: vals[slot] for key, slot in _ERROR_SLOTS if vals[slot] is not _MISSING}
        return classify_error(RawSpan(
            trace_id="", span_id="", parent_span_id=None, name="", kind=0, start_unix_ns=0,
            end_unix_ns=0, status_code=status_code, status_message=status_message,
            attributes=error_attrs, resource={}, events=exceptions or []))

    def _generic(self, span: Any, resource: Attributes, spans: list[LLMSpan],
                 evals: list[EvalResult]) -> bool:
        """The span through the generic raw form and `Normaliser` (rare attribute shapes);
        False when one of its attributes is invalid."""
        attrs: Attributes = {}
        for encoded in span.attributes:  # as `raw._proto_attrs` reads them
            pair = self._key_value(encoded)
            if pair is None:
                return False
            key, value = pair
            if not is_content_key(key):
                attrs[key] = value
        parent_raw = span.parent_span_id
        raw_span = RawSpan(
            trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
            parent_span_id=parent_raw.hex() if parent_raw else None, name=span.name,
            kind=int(span.kind), start_unix_ns=int(span.start_time_unix_nano),
            end_unix_ns=int(span.end_time_unix_nano), status_code=int(span.status.code),
            status_message=span.status.message, attributes=attrs,
            resource=resource, events=[_proto_event(e) for e in span.events])
        result = self._normaliser.normalise_span(raw_span)
        if result.span is not None:
            spans.append(result.span)
        evals.extend(result.evals)
        return True


_MISSING: Any = object()
_NO_ATTRIBUTES: Attributes = {}
_NO_PRIORITY = 1 << 30
_TRASH = N_FIELDS + N_RAW
_SLOTS: list[Any] = [None] * N_FIELDS + [_MISSING] * N_RAW + [None]  # + the trash slot
_PRIOS = [_NO_PRIORITY] * (N_FIELDS + 1)  # + the dummy field of raw-only keys
_FALLBACK_ENTRY: KvEntry = (-1, _TRASH, None, N_FIELDS, _NO_PRIORITY, None, ())
_CONTENT_KEYS: dict[str, bool] = {}
"""Keys known not to be content (`is_content_key` False), bounded."""
_ERROR_SLOTS = tuple(zip(_ERROR_KEYS, (R_ERROR_TYPE, R_HTTP_STATUS, R_HTTP_STATUS_OLD),
                         strict=True))
_LLMSpanTwin: Any = twin_of(LLMSpan)
_TraceContextTwin: Any = twin_of(TraceContext)
_CONTEXT_FIELDS = TraceContext.__slots__
