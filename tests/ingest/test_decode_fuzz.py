"""No input makes the decoder raise: truncated, random and wrong-typed messages become dead
letters with a reason (or, when still meaningful, decoded records)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.config import IngestConfig
from ingest.decode import DeadLetter, Decoded, Decoder, SourceMessage
from tests.fakes.genai_trace import chat_trace
from tests.fakes.otel_spans import T0_NS, SpanRecorder, otlp_json, otlp_proto

DECODER = Decoder(IngestConfig(), logs_topics=["otlp_logs"])
_TRACE = chat_trace(SpanRecorder(), T0_NS)
VALID_PROTO = otlp_proto(_TRACE.spans)
VALID_JSON = json.loads(otlp_json(_TRACE.spans))

# Keys of the OTLP JSON shape, so generated objects look enough like OTLP to reach deep code.
OTLP_KEYS = st.sampled_from([
    "stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue",
    "values", "key", "value", "name", "timeUnixNano", "attributes", "spans", "scopeSpans",
    "resourceSpans", "traceId", "spanId", "code", "message"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(OTLP_KEYS | st.text(max_size=10), children, max_size=3),
    max_leaves=10)


def _decode(value: bytes, topic: str = "otlp_spans") -> Decoded | DeadLetter:
    result = DECODER.decode(SourceMessage(topic=topic, partition=0, offset=0, key=None,
                                          value=value))
    if isinstance(result, DeadLetter):
        # Every rejection is one the decoder anticipated and explains ("malformed ... at
        # <place>"), never a crash caught by the last-resort handler.
        assert result.reason.startswith("malformed "), result.reason
        assert result.source.value == value
    return result


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.sampled_from(["otlp_spans", "otlp_logs"]))
def test_random_bytes_never_raise(value: bytes, topic: str) -> None:
    _decode(value, topic)


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=len(VALID_PROTO) - 1))
def test_truncated_protobuf_never_raises(cut: int) -> None:
    result = _decode(VALID_PROTO[:cut])
    if cut == 0:
        assert isinstance(result, DeadLetter)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*path, index))
    return found


ALL_PATHS = _paths(VALID_JSON)[1:]


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


@settings(max_examples=400)
@given(st.sampled_from(ALL_PATHS), json_values)
def test_wrong_typed_otlp_json_never_raises(path: tuple[Any, ...], value: Any) -> None:
    _decode(json.dumps(_replaced(VALID_JSON, path, value)).encode())


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(
    ["trace_id", "span_id", "name", "start_time", "end_time", "start_time_unix_nano",
     "end_time_unix_nano", "attributes", "resource", "status_code", "kind", "events",
     "parent_span_id"]), json_values, max_size=8))
def test_wrong_typed_flat_spans_never_raise(doc: dict[str, Any]) -> None:
    _decode(json.dumps({"trace_id": "ab" * 16, **doc}).encode())


ATTRIBUTE_VALUE_PATHS = [p for p in ALL_PATHS if len(p) >= 2 and p[-1] == "value"
                         and "attributes" in p]
attribute_values = st.dictionaries(
    st.sampled_from(["stringValue", "intValue", "doubleValue", "boolValue", "arrayValue",
                     "kvlistValue", "bytesValue"]),
    json_values | st.dictionaries(st.just("values"), json_values, max_size=1), max_size=2)


@settings(max_examples=300)
@given(st.sampled_from(ATTRIBUTE_VALUE_PATHS), attribute_values)
@example(ATTRIBUTE_VALUE_PATHS[0], {"arrayValue": {"values": 5}})
@example(ATTRIBUTE_VALUE_PATHS[0], {"arrayValue": [1]})
@example(ATTRIBUTE_VALUE_PATHS[0], {"intValue": 1e30})
def test_wrong_typed_attribute_values_never_raise(path: tuple[Any, ...], value: Any) -> None:
    _decode(json.dumps(_replaced(VALID_JSON, path, value)).encode())
