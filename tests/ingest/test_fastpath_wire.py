"""The fast path reads span attributes as encoded bytes through a cache: its shortcut reader
agrees with protobuf, and wherever protobuf has the last word (bad UTF-8, nesting depth,
repeated resource fields) the message decodes or dead-letters exactly as the generic path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.traffic import MINUTE_NS, generate
from ingest import fastpath
from ingest.config import IngestConfig
from ingest.decode import DeadLetter, Decoded, Decoder
from ingest.fastpath import ProtoFastPath, _length_delimited, _simple_key_value
from ingest.raw import _proto_value
from tests.fakes.otel_spans import T0_NS
from tests.ingest.test_fastpath import _VALUES, _any_value, _assert_same


def _fast(decoder: Decoder) -> ProtoFastPath:
    assert isinstance(decoder._fast, ProtoFastPath)
    return decoder._fast


def _request(attributes: list[KeyValue], resource: list[KeyValue] | None = None) -> bytes:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat gpt-4o-mini",
                start_time_unix_nano=T0_NS, end_time_unix_nano=T0_NS + 10**9,
                attributes=attributes)
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=resource or [KeyValue(
            key="service.name", value=AnyValue(string_value="svc"))]),
        scope_spans=[ScopeSpans(spans=[span])])])
    return bytes(request.SerializeToString())


_CHAT = [KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
         KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="gpt-4o-mini")),
         KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=120))]


def _expected(encoded: bytes) -> tuple[str, Any]:
    kv = KeyValue.FromString(encoded)
    return kv.key, _proto_value(kv.value)


# --- the shortcut reader -----------------------------------------------------------------------


@settings(max_examples=500)
@given(st.text(max_size=200), _VALUES)
def test_simple_reader_agrees_with_protobuf(key: str, spec: tuple[str, Any]) -> None:
    encoded = bytes(KeyValue(key=key, value=_any_value(spec)).SerializeToString())
    got = _simple_key_value(encoded)
    expected = _expected(encoded)
    if got is not None:
        assert got == expected
        assert type(got[1]) is type(expected[1])  # True is no 1, "" no None
    kind, value = spec
    if key and (kind in ("s", "b", "n") or (kind == "i" and value >= 0)):
        assert got is not None  # the shapes every span carries take the shortcut


@settings(max_examples=1000)
@given(st.text(max_size=12), _VALUES, st.integers(0, 300), st.integers(0, 255),
       st.binary(max_size=3))
def test_simple_reader_accepts_nothing_protobuf_reads_otherwise(
        key: str, spec: tuple[str, Any], at: int, byte: int, tail: bytes) -> None:
    encoded = bytearray(KeyValue(key=key, value=_any_value(spec)).SerializeToString())
    if encoded:
        encoded[at % len(encoded)] = byte
    mutated = bytes(encoded) + tail
    got = _simple_key_value(mutated)
    if got is not None:
        expected = _expected(mutated)  # raises if protobuf rejects what the shortcut took
        assert got == expected and type(got[1]) is type(expected[1])


def test_simple_reader_leaves_unusual_encodings_to_protobuf() -> None:
    usual = bytes(KeyValue(key="k", value=AnyValue(int_value=5)).SerializeToString())
    assert _simple_key_value(usual) == ("k", 5)
    # value before key, a repeated key, a non-canonical varint, a negative int, a double
    assert _simple_key_value(usual[3:] + usual[:3]) is None
    assert _simple_key_value(b"\x0a\x01k" + usual) is None
    assert _simple_key_value(b"\x0a\x01k\x12\x03\x18\x85\x00") is None
    assert _simple_key_value(bytes(KeyValue(
        key="k", value=AnyValue(int_value=-1)).SerializeToString())) is None
    assert _simple_key_value(bytes(KeyValue(
        key="k", value=AnyValue(double_value=1.5)).SerializeToString())) is None
    assert _simple_key_value(b"\x0a\x02\xff\xfe") is None  # bad UTF-8: protobuf decides


# --- where protobuf has the last word ----------------------------------------------------------


@pytest.mark.parametrize("where", ["key", "value", "content value", "resource", "event"])
def test_bad_utf8_dead_letters_as_the_generic_path(where: str) -> None:
    fast, generic = Decoder(IngestConfig()), Decoder(IngestConfig(), fast=False)
    marker = "\u00e9\u00e9"  # two 2-byte characters: replaced by an invalid 4-byte sequence
    attrs = list(_CHAT)
    resource = None
    if where == "key":
        attrs.append(KeyValue(key=f"app.{marker}", value=AnyValue(string_value="x")))
    elif where == "value":
        attrs.append(KeyValue(key="session.id", value=AnyValue(string_value=marker)))
    elif where == "content value":
        attrs.append(KeyValue(key="gen_ai.prompt", value=AnyValue(string_value=marker)))
    elif where == "resource":
        resource = [KeyValue(key="service.name", value=AnyValue(string_value=marker))]
    value = _request(attrs, resource)
    if where == "event":
        request = ExportTraceServiceRequest.FromString(value)
        request.resource_spans[0].scope_spans[0].spans[0].events.add(
            name="exception", time_unix_nano=T0_NS, attributes=[KeyValue(
                key="exception.message", value=AnyValue(string_value=marker))])
        value = bytes(request.SerializeToString())
    good = _assert_same(value, fast, generic)
    assert isinstance(good, Decoded)
    bad = value.replace(marker.encode(), b"\xed\xa0\x80\xff")
    assert bad != value
    result = _assert_same(bad, fast, generic)
    assert isinstance(result, DeadLetter) and "malformed" in result.reason
    # and once more, with the good value's attributes in the cache
    assert isinstance(_assert_same(bad, fast, generic), DeadLetter)


def test_nesting_limit_is_the_real_requests() -> None:
    fast, generic = Decoder(IngestConfig()), Decoder(IngestConfig(), fast=False)
    outcomes = set()
    for depth in range(40, 52):
        # Built as bytes: protobuf objects refuse to nest this deep.
        nested = b"\x0a\x01x"  # AnyValue(string_value="x")
        for _ in range(depth):  # AnyValue.array_value (5) -> ArrayValue.values (1)
            nested = _length_delimited(0x2A, _length_delimited(0x0A, nested))
        kv = _length_delimited(0x0A, b"custom.deep") + _length_delimited(0x12, nested)
        value = _with_raw_attribute(_request(_CHAT), kv)
        outcomes.add(type(_assert_same(value, fast, generic)))
    assert outcomes == {Decoded, DeadLetter}  # the limit lies inside the range tried


def _with_raw_attribute(request: bytes, kv: bytes) -> bytes:
    """`request` with the encoded attribute `kv` added to its one span."""
    parsed = ExportTraceServiceRequest.FromString(request)
    span = parsed.resource_spans[0].scope_spans[0].spans[0]
    span_bytes = bytes(span.SerializeToString()) + _length_delimited(0x4A, kv)
    scope = _length_delimited(0x12, span_bytes)
    resource = bytes(parsed.resource_spans[0].resource.SerializeToString())
    resource_spans = _length_delimited(0x0A, resource) + _length_delimited(0x12, scope)
    return _length_delimited(0x0A, resource_spans)


def test_a_repeated_resource_field_is_merged_as_protobuf_merges_it() -> None:
    fast, generic = Decoder(IngestConfig()), Decoder(IngestConfig(), fast=False)
    value = _request(_CHAT)
    second = bytes(Resource(attributes=[
        KeyValue(key="service.name", value=AnyValue(string_value="other")),
        KeyValue(key="deployment.environment", value=AnyValue(string_value="prod")),
    ]).SerializeToString())
    parsed = ExportTraceServiceRequest.FromString(value)
    resource_spans = bytes(parsed.resource_spans[0].SerializeToString()) + \
        _length_delimited(0x0A, second)
    merged = _length_delimited(0x0A, resource_spans)
    assert _fast(fast).decode(merged) is None  # declined: the generic path merges
    result = _assert_same(merged, fast, generic)
    assert isinstance(result, Decoded)
    assert result.spans[0].context.service == "other"
    assert result.spans[0].context.environment == "prod"


# --- the caches --------------------------------------------------------------------------------


def test_the_attribute_cache_is_bounded_and_keeps_no_content() -> None:
    fast, generic = Decoder(IngestConfig()), Decoder(IngestConfig(), fast=False)
    path = _fast(fast)
    path.KV_CACHE_SIZE = 16  # an instance override, for the test
    traffic = generate(300, 1000 * MINUTE_NS, 500.0, services=6, spans_per_message=10)
    for message in traffic.messages:
        assert isinstance(_assert_same(message.value, fast, generic), Decoded)
        assert len(path._kvs) <= 16
    secret = "my password is hunter2"
    long_value = "m" * (ProtoFastPath.KV_CACHE_MAX_BYTES + 1)
    value = _request([*_CHAT,
                      KeyValue(key="gen_ai.prompt", value=AnyValue(string_value=secret)),
                      KeyValue(key="input.value", value=AnyValue(string_value=secret)),
                      KeyValue(key="app.user_segment", value=AnyValue(string_value=long_value))])
    for _ in range(2):
        result = _assert_same(value, fast, generic)
        assert isinstance(result, Decoded)
        assert result.spans[0].context.user_segment == long_value
    assert not any(secret.encode() in key or long_value.encode() in key for key in path._kvs)


def test_cached_values_are_shared_but_never_changed() -> None:
    fast, generic = Decoder(IngestConfig()), Decoder(IngestConfig(), fast=False)
    reasons = KeyValue(key="gen_ai.response.finish_reasons", value=AnyValue(
        array_value=ArrayValue(values=[AnyValue(string_value="stop")])))
    value = _request([*_CHAT, reasons])
    first = _assert_same(value, fast, generic)
    second = _assert_same(value, fast, generic)
    assert isinstance(first, Decoded) and isinstance(second, Decoded)
    assert first.spans[0].finish_reasons == second.spans[0].finish_reasons == ("stop",)


def test_the_slot_layout_is_the_one_span_unpacks() -> None:
    # `_span` names the slots by unpacking them in this order.
    assert (fastpath.F_PROVIDER, fastpath.F_OPERATION, fastpath.F_REQUEST_TYPE) == (9, 24, 25)
    assert (fastpath.R_OI_KIND, fastpath.R_INVOCATION_EMBEDDING, fastpath.R_ERROR_TYPE,
            fastpath._TRASH) == (26, 32, 33, 36)
    assert len(fastpath._SLOTS) == 37 and fastpath._SLOTS[fastpath.F_FINISH] == ()
