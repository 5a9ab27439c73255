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
)

_REFUSAL_REASONS = frozenset({"content_filter", "refusal"})
_KIND_OPERATIONS: dict[Classification | None, str | None] = {
    "llm": "chat", "embedding": "embeddings", "retrieval": "retrieval", "request": None}
"""`operation_of(None, None, kind)` for the kinds that reach the record."""

# Field slots. 0..8 are the TraceContext fields, in its order.
(F_PROVIDER, F_REQUEST_MODEL, F_RESPONSE_MODEL, F_INPUT, F_OUTPUT, F_CACHED, F_REASONING,
 F_STREAMING, F_FINISH, F_TTFT, F_COST, F_CACHE_HIT, F_FEEDBACK, F_REGENERATED, F_REFUSAL,
 F_OPERATION, F_REQUEST_TYPE) = range(9, 26)
N_FIELDS = 26
# Raw slots: the attribute value itself (empty or None included), as `attrs.get` would give.
(R_OI_KIND, R_OPERATION, R_REQUEST_TYPE, R_DB_SYSTEM_NAME, R_DB_SYSTEM, R_INVOCATION_LLM,
 R_INVOCATION_EMBEDDING, R_ERROR_TYPE, R_HTTP_STATUS, R_HTTP_STATUS_OLD) = range(
    N_FIELDS, N_FIELDS + 10)
N_RAW = 10
_RAW_KEYS = ("openinference.span.kind", "gen_ai.operation.name", "llm.request.type",
             "db.system.name", "db.system", *INVOCATION_KEYS,
             "error.type", "http.response.status_code", "http.status_code")
_MARKER_KEYS = (*_RAW_KEYS[:3], *GENAI_MARKER_KEYS, *_RAW_KEYS[3:5])
"""The keys `classify` looks at before the span's name (dialect markers, database system);
the GenAI markers count by presence alone (their bits in `seen`)."""
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

KeyInfo = tuple[int, int, int, tuple[tuple[int, int], ...]]
"""What a key does: (its bit in a span's `seen` when its value is non-empty, its bit when
empty, raw slot or _TRASH, the (field, blockers)s it fills). A field's `blockers` are the
non-empty bits of the keys before it in that field's order, so "the first non-empty key in
order" wins whatever order the attributes come in."""
KvEntry = tuple[int, int, int, Any, tuple[tuple[int, int, Any], ...]]
"""What one encoded attribute does: (its key's bit, then the first slot it fills, that
fill's blockers and value, then further (slot, blockers, value)s). The values are converted
per field; a raw slot gets the raw value, blocked by nothing (0). A key with nothing to fill
fills the trash slot, blocked by bit 0 (always set in `seen`)."""

_IGNORE: tuple[()] = ()
_FALLBACK: KeyInfo = (-1, -1, -1, ())
"""Keys the normaliser reads by prefix: the span takes the generic path."""
Rates = tuple[float, float, float]
"""A model's USD per 1M input, cached input and output tokens (`ModelPrice`)."""
Resource = tuple[Attributes, TraceContext, list[Any]]
"""A resource's attributes, its context, and a span's slots before its attributes: the
context's field values (a span's own values stand over them), then the defaults."""


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
    for kv in kvs[:]:  # a slice: see `decode`
        key = kv.key
        if key == _EVAL_NAME:
            name = _proto_value(kv.value)
        elif key == _EVAL_VALUE:
            value = _proto_value(kv.value)
        elif key == _EVAL_LABEL:
            label = _proto_value(kv.value)
    if name.__class__ is not str or (value is not None and value.__class__ is not float) \
            or (label is not None and label.__class__ is not str) or value == 0:
        # Not the usual name, score and label (0.0 and -0.0 would share a cache entry)
        return evaluation_score(name, value, label)
    key = (name, value, label)
    score = _SCORES.get(key, _NO_SCORE)
    if score is _NO_SCORE:
        score = evaluation_score(name, value, label)
        if len(_SCORES) < 10_000:  # bounded: the names, scores and labels of the traffic
            _SCORES[key] = score
    return score  # type: ignore[no-any-return]


_EVAL_NAME, _EVAL_VALUE, _EVAL_LABEL = EVALUATION_KEYS
_SCORES: dict[tuple[str, float | None, str | None], EvalScore | None] = {}
"""`evaluation_score` of a string name, float score and string label: the same few come on
many events (the scores are immutable, so records share them as they share contexts)."""
_NO_SCORE: Any = object()


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
        for name in (*_RAW_KEYS, *GENAI_MARKER_KEYS):
            targets.setdefault(name, [])
        self._keymap = _KeyMap()
        self._context_bits = self._marker_bits = self._genai_marker_bits = 0
        # Bits of `seen` (see `_spans`): 0 always set, then one bit per key for a non-empty
        # value, common keys first (a span of common keys keeps `seen` below `_SMALL`, a
        # one-digit int: cheaper | and &), and far above them (rare) one bit per key for an
        # empty value, `_resource_bit` and `_fallback_bit`.
        ordered = sorted(targets, key=lambda k: (k not in _COMMON_KEYS, _COMMON_KEYS.get(k, 0)))
        self._empty_shift = max(len(ordered) + 1, _SMALL.bit_length())
        self._key_bits = (1 << len(ordered) + 1) - 1
        """Bit 0 and every key's non-empty bit: counts the keys a span has."""
        self._resource_bit = 1 << 2 * self._empty_shift
        """Some context field is `_FROM_RESOURCE`."""
        self._fallback_bit = self._resource_bit << 1
        """A key the generic path reads (`_FALLBACK`): the highest bit."""
        self._fallback_entry: KvEntry = (self._fallback_bit, _TRASH, 1, None, ())
        bits: dict[str, int] = {}
        fillers: dict[int, list[tuple[int, int]]] = {}
        """Field -> the (priority, non-empty bit) of the keys that fill it."""
        for index, name in enumerate(ordered, start=1):
            if is_content_key(name):
                continue  # dropped before the normaliser sees it, whatever the config says
            bit = bits[name] = 1 << index
            for field_index, priority in targets[name]:
                fillers.setdefault(field_index, []).append((priority, bit))
            if any(field_index < 9 for field_index, _ in targets[name]):
                self._context_bits |= bit | bit << self._empty_shift
            if name in _MARKER_KEYS:
                self._marker_bits |= bit | bit << self._empty_shift
            if name in GENAI_MARKER_KEYS:
                self._genai_marker_bits |= bit | bit << self._empty_shift
        for name, bit in bits.items():
            raw_slot = N_FIELDS + _RAW_KEYS.index(name) if name in _RAW_KEYS else _TRASH
            fills = tuple((field_index, sum(before for rank, before in fillers[field_index]
                                            if rank < priority))
                          for field_index, priority in targets[name])
            self._keymap[name] = (bit, bit << self._empty_shift, raw_slot, fills)
        # The masks for a `seen` below `_SMALL` (the common case): their one-digit part.
        self._marker_small, self._context_small = (
            self._marker_bits & _SMALL - 1, self._context_bits & _SMALL - 1)
        self._converters = self._field_converters(normaliser)
        self._kvs: dict[bytes, KvEntry | tuple[()]] = {}
        self._resources: dict[bytes, Resource] = {}
        self._rates: dict[str, Rates | None] = {}
        """Model name -> its `Rates` (None: not priced), as `_rates_of` found them."""
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
        # Repeated fields are iterated as `[:]` slices: upb builds the list in C; a plain `for`
        # over the container takes about 1.4x as long per item (timeit, 8 span attributes).
        count = self._spans(request.resource_spans[:], spans, evals)
        if count <= 0:  # no spans, or the generic path
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
            found = (attrs, context,
                     [*(getattr(context, name) for name in _CONTEXT_FIELDS), *_SLOTS[9:]])
            if len(self._resources) >= 10_000:  # bounded: a cache
                self._resources.clear()
            self._resources[key] = found
        return found

    def _rates_of(self, model: str) -> Rates | None:
        """`price_of(model)` as `Rates`, remembered (bounded: model names come from the
        traffic)."""
        found = self._rates.get(model, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        price = self._price_of(model)
        rates = None if price is None else (
            price.input_per_mtok, price.cached_input_per_mtok, price.output_per_mtok)
        if len(self._rates) < 10_000:
            self._rates[model] = rates
        return rates

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
            entry = self._fallback_entry
        else:
            bit, empty_bit, raw_slot, fills = info
            converted: list[tuple[int, int, Any]] = []
            if raw is None or raw == "":
                bit = empty_bit
            else:
                converted = [(field_index, blockers, self._converters[field_index](raw))
                             for field_index, blockers in fills]
            if any(value is None and field_index < 9 for field_index, _, value in converted):
                # A context value that is no string (a list): the resource's value stands in
                # for it, which differs per resource: a marker, replaced per span. Rare.
                bit |= self._resource_bit
                converted = [(field_index, blockers, _FROM_RESOURCE
                              if value is None and field_index < 9 else value)
                             for field_index, blockers, value in converted]
            if raw_slot != _TRASH:
                converted.append((raw_slot, 0, raw))  # the raw value, whatever the others
            if not converted:
                converted.append((_TRASH, 1, None))  # nothing to fill (never filled)
            entry = (bit, *converted[0], tuple(converted[1:]))
        if len(encoded) <= self.KV_CACHE_MAX_BYTES:
            if len(self._kvs) >= self.KV_CACHE_SIZE:
                self._kvs.clear()
            self._kvs[encoded] = entry
        return entry

    def _spans(self, entries: list[Any],  # noqa: PLR0915 - flat: see docstring
               spans: list[LLMSpan], evals: list[EvalResult]) -> int:
        """Normalise a request's spans (its `ResourceSpans`) into `spans` / `evals`; their raw
        count, or -1 when the message needs the generic path (bad ids, an attribute or resource
        protobuf rejects).

        Written flat on purpose, one loop over the request's resources and one over their spans:
        this runs once per span, and each call or lookup saved here is throughput (see
        bench/decode_micro.py). (A message holds a resource per service, a few spans each: a
        call per resource or scope costs more than its spans' share of the rest.)"""
        kvs = self._kvs
        resources = self._resources
        key_bits, empty_shift, fallback_bit = self._key_bits, self._empty_shift, self._fallback_bit
        marker_small, context_small = self._marker_small, self._context_small
        # The spans of a trace come together, a parent right after its children (as SDKs and
        # the collector batch them): ids equal to the previous record's reuse its hex strings
        # (equal values, shared: less to allocate, hash and free per record).
        last_trace_raw, trace_id, last_parent_raw, parent_id = self._last_ids
        count = 0
        for entry in entries:
            encoded = entry.resource[:]  # one item, or none (an empty resource)
            resource = resources.get(encoded[0]) if len(encoded) == 1 else None
            if resource is None:
                resource = self._resource(encoded)
                if resource is None:
                    return -1
            resource_attrs, resource_context, resource_values = resource
            scopes = entry.scope_spans[:]
            # Most resources hold one scope
            items = scopes[0].spans[:] if len(scopes) == 1 else [
                span for scope in scopes for span in scope.spans[:]]
            count += len(items)
            for span in items:
                trace_raw = span.trace_id
                span_raw = span.span_id
                parent_raw = span.parent_span_id
                if len(trace_raw) != 16 or len(span_raw) != 8 or (
                        parent_raw and len(parent_raw) != 8):
                    return -1
                vals = resource_values.copy()  # context fields (the resource's), fields, raw values
                seen = 1
                unread = 0
                attributes = span.attributes[:]  # a slice: see `decode`
                for encoded in attributes:
                    try:
                        found = kvs[encoded]
                    except KeyError:  # new to the cache (a plain [] is cheaper than .get per hit)
                        learnt = self._learn(encoded)
                        if learnt is None:
                            return -1
                        found = learnt
                    if not found:
                        unread += 1  # not read by the normaliser, or content: dropped unread
                        continue
                    bit, slot, blockers, value, more = found
                    seen |= bit
                    # No key before it in the field's order has a value (most keys come first in
                    # their fields' orders: testing `blockers` alone is cheaper than `&`).
                    if not blockers or not seen & blockers:
                        vals[slot] = value
                    if more:
                        for slot, blockers, value in more:
                            if not blockers or not seen & blockers:
                                vals[slot] = value
                if seen < _SMALL:  # common keys with values: one-digit ints
                    keys = seen
                    marked, has_context = seen & marker_small, seen & context_small
                    from_resource = 0
                elif seen >= fallback_bit:  # a key the generic path reads
                    keys = 0
                else:  # rare keys or empty values: their bits above `_SMALL` (`__init__`)
                    keys = (seen | seen >> empty_shift) & key_bits
                    marked, has_context = seen & self._marker_bits, seen & self._context_bits
                    from_resource = seen & self._resource_bit
                # A key twice (one bit for two attributes), or a fallback key: the generic path.
                if keys.bit_count() != len(attributes) - unread + 1:
                    if not self._generic(span, resource_attrs, spans, evals):
                        return -1
                    continue

                # The slots by name, in slot order (test_fastpath_wire checks the layout).
                (service, environment, app_version, template_version, model_version, session_id,
                 user_id, user_segment, endpoint, provider, request_model, response_model,
                 input_tokens, output_tokens, cached, reasoning, streaming, finish_reasons, ttft,
                 cost, cache_hit, feedback, regenerated, refusal, operation, request_type, oi_kind,
                 raw_operation, raw_request_type, db_system_name, db_system, invocation_llm,
                 invocation_embedding, error_type, _, _, _) = vals

                # --- classify (normalise.classify, same order) ---
                name = span.name
                if oi_kind is _MISSING and raw_operation.__class__ is str \
                        and raw_operation in LLM_OPERATIONS:
                    kind: Classification | None = "llm"  # the common OTel GenAI case, short-cut
                elif not marked:
                    # No dialect marker at all (roots, tool and framework spans): `classify_rest`
                    # without a database system or eval keys (those took the generic path).
                    if parent_raw:
                        continue  # no metric
                    kind = "request"
                else:
                    if oi_kind.__class__ is str and oi_kind.upper() == "EVALUATOR":
                        if not self._generic(span, resource_attrs, spans, evals):
                            return -1
                        continue
                    kind = classify_marked(
                        None if oi_kind is _MISSING else oi_kind,
                        None if raw_operation is _MISSING else raw_operation,
                        None if raw_request_type is _MISSING else raw_request_type,
                        seen & self._genai_marker_bits != 0)
                    if kind is None:
                        if db_system_name is not _MISSING:
                            db_system = db_system_name
                        elif db_system is _MISSING:
                            db_system = None
                        kind = classify_rest(db_system, not parent_raw, name, _NO_ATTRIBUTES)
                        if kind is None:
                            continue  # tool / framework span: no metric
                    if kind == "evaluation":  # only from eval keys or an EVALUATOR: generic already
                        if not self._generic(span, resource_attrs, spans, evals):
                            return -1
                        continue

                # --- context (Normaliser.context_of; a request's endpoint defaults to its name) ---
                # The slots started from the resource's values; the span's own stand over them (user
                # ids are hashed already). Without context keys the resource's context is shared.
                if from_resource:
                    (service, environment, app_version, template_version, model_version,
                     session_id, user_id, user_segment, endpoint) = _from_resource(
                        (service, environment, app_version, template_version, model_version,
                         session_id, user_id, user_segment, endpoint), resource_values)
                if kind == "request" and endpoint is None:
                    endpoint = name or None
                    fresh = 1
                else:
                    fresh = has_context
                if fresh:
                    context = _TraceContextShell()  # slot by slot: see `_shell_of`
                    context.service = service
                    context.environment = environment
                    context.app_version = app_version
                    context.prompt_template_version = template_version
                    context.model_version = model_version
                    context.session_id = session_id
                    context.user_id = user_id
                    context.user_segment = user_segment
                    context.endpoint = endpoint
                    context.__class__ = TraceContext
                else:
                    context = resource_context

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
                # Most spans have no status at all: `HasField` costs less than reading its code.
                status_code = span.status.code if span.HasField("status") else 0
                if status_code != STATUS_ERROR and exceptions is None and (
                        error_type is _MISSING or error_type is None or error_type == ""):
                    is_error = False
                    error_kind = error_type = http_status = None
                else:
                    error = self._error(vals, status_code, span.status.message, exceptions)
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
                if kind == "llm" or kind == "embedding":  # noqa: PLR1714 - faster than a set here
                    model = request_model or response_model
                    if cost is None and (input_tokens is not None or output_tokens is not None) \
                            and model:
                        # The common case, inline: priced from the table (Normaliser.cost_of).
                        try:
                            rates = self._rates[model]
                        except KeyError:
                            rates = self._rates_of(model)
                        if rates is None and response_model is not None:
                            rates = self._rates_of(response_model)
                        if rates is None:
                            cost_usd, cost_source, unknown_reason = None, None, "unknown_model"
                        else:
                            # `ModelPrice.cost_usd`, the same operations in the same order
                            uncached = input_tokens or 0
                            cached_tokens = cached or 0
                            if cached_tokens > uncached:  # noqa: PLR1730 - cheaper than min() here
                                cached_tokens = uncached
                            cost_usd = ((uncached - cached_tokens) * rates[0]
                                        + cached_tokens * rates[1]
                                        + (output_tokens or 0) * rates[2]) / 1_000_000
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
                    operation = _KIND_OPERATIONS[kind] if request_type is None \
                        else operation_of(None, request_type, cast("SpanKind", kind))
                is_refusal = refusal is True
                if not is_refusal and finish_reasons:
                    is_refusal = not _REFUSAL_REASONS.isdisjoint(finish_reasons)
                # Ids as the previous record's (see above) share its strings.
                if trace_raw != last_trace_raw:
                    trace_id = trace_raw.hex()
                    last_trace_raw = trace_raw
                span_id = parent_id if span_raw == last_parent_raw else span_raw.hex()
                if parent_raw != last_parent_raw:
                    parent_id = parent_raw.hex() if parent_raw else None
                    last_parent_raw = parent_raw
                record = _LLMSpanShell()  # slot by slot: see `_shell_of`
                record.trace_id = trace_id
                record.span_id = span_id
                record.parent_span_id = parent_id
                record.kind = kind
                record.name = name
                record.start_unix_ns = start
                record.end_unix_ns = span.end_time_unix_nano
                record.context = context
                record.operation = operation
                record.provider = provider
                record.request_model = request_model
                record.response_model = response_model
                record.input_tokens = input_tokens
                record.output_tokens = output_tokens
                record.cached_input_tokens = cached
                record.reasoning_tokens = reasoning
                record.time_to_first_token_s = ttft
                record.is_streaming = streaming
                record.finish_reasons = finish_reasons
                record.is_error = is_error
                record.error_kind = error_kind
                record.error_type = error_type
                record.http_status = http_status
                record.is_refusal = is_refusal
                record.is_cache_hit = cache_hit
                record.feedback = feedback
                record.is_regenerated = regenerated
                record.evals = scores
                record.cost_usd = cost_usd
                record.cost_source = cost_source
                record.unknown_cost_reason = unknown_reason
                record.__class__ = LLMSpan
                spans.append(record)
        self._last_ids = (last_trace_raw, trace_id, last_parent_raw, parent_id)
        return count

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


def _from_resource(values: tuple[Any, ...], resource_values: list[Any]) -> list[Any]:
    """Context field values with each `_FROM_RESOURCE` replaced by the resource's value."""
    return [own if own is not _FROM_RESOURCE else theirs
            for own, theirs in zip(values, resource_values, strict=False)]


_MISSING: Any = object()
_NO_ATTRIBUTES: Attributes = {}
_TRASH = N_FIELDS + N_RAW
_SLOTS: list[Any] = [None] * N_FIELDS + [_MISSING] * N_RAW + [None]  # + the trash slot
_SLOTS[F_FINISH] = ()  # `finish_reasons_of` never gives None: no finish reason key
_FROM_RESOURCE: Any = object()
"""A context field's value when the span's winning attribute is no string (a list)."""
_SMALL = 1 << 30
"""Ints below this are one digit (CPython's 30-bit digits): bit operations on them are fast."""
_CONTENT_KEYS: dict[str, bool] = {}
"""Keys known not to be content (`is_content_key` False), bounded."""
_ERROR_SLOTS = tuple(zip(_ERROR_KEYS, (R_ERROR_TYPE, R_HTTP_STATUS, R_HTTP_STATUS_OLD),
                         strict=True))


def _shell_of(cls: type[Any]) -> Any:
    """A plain class with the slots of the slotted dataclass `cls` and no `__init__`: `_spans`
    makes an empty one, sets its slots one by one, then gives it the class `cls` (as
    `span.fast_builder` does, with the same result: an ordinary frozen `cls`). Slot stores
    written out in the loop are specialised by the interpreter and need no call: building a
    record this way takes about half the instructions of `fast_builder`'s 31-argument call
    (callgrind)."""
    return type(f"_{cls.__name__}Shell", (), {"__slots__": cls.__slots__})


_LLMSpanShell: Any = _shell_of(LLMSpan)
_TraceContextShell: Any = _shell_of(TraceContext)
_CONTEXT_FIELDS = TraceContext.__slots__
