"""Wire formats -> `RawSpan` / `RawLog`: the OTLP structure flattened, content already dropped.

In: one Kafka message value (OTLP protobuf, OTLP JSON as the collector writes it, or one flat
JSON span). Out: raw spans and log records with plain-dict attributes. Raises `MalformedMessage`
naming the place that is wrong. Normalisation into `LLMSpan` happens in `normalise.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingest.privacy import is_content_key

AttrValue = str | bool | int | float | list[Any] | None
Attributes = dict[str, AttrValue]
Encoding = Literal["auto", "otlp_proto", "otlp_json", "flat_json"]
Signal = Literal["traces", "logs"]

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
SPAN_KIND_NAMES = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")


class MalformedMessage(ValueError):  # noqa: N818 - reads as what the message is
    """A message that cannot be read; `where` names the place (e.g. `resourceSpans[0]...`)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


@dataclass(frozen=True, slots=True)
class RawEvent:
    name: str
    time_unix_ns: int
    attributes: Attributes


@dataclass(slots=True)
class RawSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_unix_ns: int
    end_unix_ns: int
    status_code: int
    status_message: str
    attributes: Attributes
    resource: Attributes
    events: list[RawEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RawLog:
    trace_id: str | None
    span_id: str | None
    event_name: str
    time_unix_ns: int
    attributes: Attributes
    resource: Attributes


@dataclass(frozen=True, slots=True)
class RawBatch:
    spans: list[RawSpan]
    logs: list[RawLog]


# --- OTLP protobuf ---------------------------------------------------------------------------


def _proto_value(value: Any) -> AttrValue:
    which = value.WhichOneof("value")
    if which == "string_value":
        return str(value.string_value)
    if which == "int_value":
        return int(value.int_value)
    if which == "double_value":
        return float(value.double_value)
    if which == "bool_value":
        return bool(value.bool_value)
    if which == "array_value":
        return [_proto_value(v) for v in value.array_value.values]
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which == "kvlist_value":
        return None  # nested maps carry no field we read; never worth the walk
    return None


def _proto_attrs(kvs: Any) -> Attributes:
    attrs: Attributes = {}
    for kv in kvs:
        key = kv.key
        dropped = _CONTENT_KEYS.get(key)
        if dropped is None:
            dropped = _is_content(key)
        if dropped:
            continue
        value = kv.value
        which = value.WhichOneof("value")  # the common kinds first, without a call each
        if which == "string_value":
            attrs[key] = value.string_value
        elif which == "int_value":
            attrs[key] = value.int_value
        else:
            attrs[key] = _proto_value(value)
    return attrs


_CONTENT_KEYS: dict[str, bool] = {}
"""`is_content_key` per attribute key seen (keys repeat on every span), bounded."""


def _is_content(key: str) -> bool:
    dropped = is_content_key(key)
    if len(_CONTENT_KEYS) < 10_000:
        _CONTENT_KEYS[key] = dropped
    return dropped


def _span_id_hex(raw: bytes, where: str, *, optional: bool) -> str | None:
    if not raw:
        if optional:
            return None
        raise MalformedMessage(where, "span id is empty")
    if len(raw) != 8:
        raise MalformedMessage(where, f"span id has {len(raw)} bytes, expected 8")
    return raw.hex()


def _trace_id_hex(raw: bytes, where: str) -> str:
    if len(raw) != 16:
        raise MalformedMessage(where, f"trace id has {len(raw)} bytes, expected 16")
    return raw.hex()


def _parse(message_type: Any, value: bytes) -> Any:
    try:
        return message_type.FromString(value)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MalformedMessage("", f"not an OTLP {message_type.__name__}: {exc}") from None


def _proto_items(resources: Any, scopes_field: str, items_field: str
                 ) -> Iterator[tuple[Any, Attributes, str]]:
    """Every span (or log record) of a request with its resource attributes and its place."""
    resource_field = scopes_field.replace("scope", "resource")
    for r, entry in enumerate(resources):
        resource = _proto_attrs(entry.resource.attributes)
        for s, scope in enumerate(getattr(entry, scopes_field)):
            for i, item in enumerate(getattr(scope, items_field)):
                where = f"{resource_field}[{r}].{scopes_field}[{s}].{items_field}[{i}]"
                yield item, resource, where


def decode_proto_traces(value: bytes) -> list[RawSpan]:
    """Spans of one `ExportTraceServiceRequest` (the collector's `otlp_proto` encoding)."""
    request = _parse(ExportTraceServiceRequest, value)
    spans: list[RawSpan] = []
    for span, resource, where in _proto_items(request.resource_spans, "scope_spans", "spans"):
        span_id = _span_id_hex(span.span_id, where, optional=False)
        assert span_id is not None
        spans.append(
            RawSpan(
                trace_id=_trace_id_hex(span.trace_id, where),
                span_id=span_id,
                parent_span_id=_span_id_hex(span.parent_span_id, where, optional=True),
                name=span.name,
                kind=int(span.kind),
                start_unix_ns=int(span.start_time_unix_nano),
                end_unix_ns=int(span.end_time_unix_nano),
                status_code=int(span.status.code),
                status_message=span.status.message,
                attributes=_proto_attrs(span.attributes),
                resource=resource,
                events=[_proto_event(e) for e in span.events],
            )
        )
    _require_content(value, spans, "resource_spans")
    return spans


def _proto_event(event: Any) -> RawEvent:
    # Event attributes matter only for exceptions and evaluation results; the rest (prompt and
    # completion events) would only carry content, so they are never read.
    keep = event.name in _EVENTS_WITH_READ_ATTRIBUTES
    return RawEvent(
        name=event.name,
        time_unix_ns=int(event.time_unix_nano),
        attributes=_proto_attrs(event.attributes) if keep else {},
    )


_EVENTS_WITH_READ_ATTRIBUTES = frozenset({"exception", "gen_ai.evaluation.result"})


def decode_proto_logs(value: bytes) -> list[RawLog]:
    """Log records of one `ExportLogsServiceRequest` (evaluation events live here)."""
    request = _parse(ExportLogsServiceRequest, value)
    logs: list[RawLog] = []
    for record, resource, where in _proto_items(request.resource_logs, "scope_logs",
                                                "log_records"):
        attributes = _proto_attrs(record.attributes)
        logs.append(
            RawLog(
                trace_id=_trace_id_hex(record.trace_id, where) if record.trace_id else None,
                span_id=_span_id_hex(record.span_id, where, optional=True),
                event_name=record.event_name or str(attributes.get("event.name") or ""),
                time_unix_ns=int(record.time_unix_nano or record.observed_time_unix_nano),
                attributes=attributes,
                resource=resource,
            )
        )
    _require_content(value, logs, "resource_logs")
    return logs


def _require_content(value: bytes | Mapping[str, Any], items: list[Any], what: str) -> None:
    # Random bytes often parse as a protobuf with only unknown fields; a non-empty message that
    # yields nothing is almost always the wrong encoding or the wrong topic, so say so.
    if value and not items:
        raise MalformedMessage("", f"message holds no {what}: wrong encoding or topic?")


# --- OTLP JSON (collector `otlp_json`: hex ids, integer enums, 64-bit ints as strings) -----


def _json_value(value: Any, where: str) -> AttrValue:
    if not isinstance(value, dict):
        raise MalformedMessage(where, f"attribute value must be an object, got {_kind(value)}")
    for key, item in value.items():
        if key == "stringValue":
            return _json_str(item, f"{where}.stringValue")
        if key == "intValue":
            return _json_int(item, f"{where}.intValue")
        if key == "doubleValue":
            return _json_float(item, f"{where}.doubleValue")
        if key == "boolValue":
            if not isinstance(item, bool):
                raise MalformedMessage(f"{where}.boolValue", f"expected true or false, got "
                                                             f"{_kind(item)}")
            return item
        if key == "arrayValue":
            array = _obj(item, f"{where}.arrayValue")
            values = _list_at(array, ("values",), f"{where}.arrayValue")
            return [_json_value(v, f"{where}.arrayValue.values[{i}]")
                    for i, v in enumerate(values)]
        if key == "bytesValue":
            return _json_str(item, f"{where}.bytesValue")
        if key == "kvlistValue":
            return None  # nested maps carry no field we read
    return None


def _json_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MalformedMessage(where, f"expected a string, got {_kind(value)}")
    return value


def _json_attrs(items: Any, where: str) -> Attributes:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise MalformedMessage(where, f"attributes must be a list, got {_kind(items)}")
    attrs: Attributes = {}
    for i, kv in enumerate(items):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise MalformedMessage(f"{where}[{i}]", "attribute needs a string `key`")
        if not is_content_key(kv["key"]):
            attrs[kv["key"]] = _json_value(kv.get("value", {}), f"{where}[{i}].value")
    return attrs


def _json_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise MalformedMessage(where, "expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise MalformedMessage(where, f"expected an integer, got {value!r:.40}")


def _json_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise MalformedMessage(where, "expected a number, got a boolean")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise MalformedMessage(where, f"expected a number, got {value!r:.40}") from None
    if math.isnan(result):
        raise MalformedMessage(where, "number is NaN")
    return result


def _json_id(value: Any, where: str, nbytes: int, *, optional: bool) -> str | None:
    if value in (None, "") and optional:
        return None
    if not isinstance(value, str):
        raise MalformedMessage(where, f"id must be a hex string, got {_kind(value)}")
    text = value.lower()
    if len(text) != nbytes * 2:
        # Some exporters (protobuf's canonical JSON) write ids in base64; accept that too.
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != nbytes:
            raise MalformedMessage(where, f"id {value!r:.40} is not {nbytes} bytes of hex")
        text = decoded.hex()
    try:
        bytes.fromhex(text)
    except ValueError:
        raise MalformedMessage(where, f"id {value!r:.40} is not hex") from None
    if optional and text == "0" * (nbytes * 2):
        return None
    return text


def _list_at(obj: Mapping[str, Any], keys: tuple[str, ...], where: str) -> list[Any]:
    for key in keys:
        if key in obj:
            items = obj[key]
            if not isinstance(items, list):
                raise MalformedMessage(f"{where}.{key}", f"must be a list, got {_kind(items)}")
            return items
    return []


def _obj(item: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise MalformedMessage(where, f"must be an object, got {_kind(item)}")
    return item


def _json_resources(doc: Mapping[str, Any], keys: tuple[str, str]
                    ) -> Iterator[tuple[Mapping[str, Any], Attributes, str]]:
    """Each resource entry of an OTLP JSON document with its attributes and its place."""
    for r, item in enumerate(_list_at(doc, keys, "")):
        where = f"{keys[0]}[{r}]"
        entry = _obj(item, where)
        resource = _obj(entry.get("resource") or {}, f"{where}.resource")
        yield entry, _json_attrs(resource.get("attributes"), f"{where}.resource.attributes"), where


def decode_json_traces(doc: Mapping[str, Any]) -> list[RawSpan]:
    """Spans of an OTLP JSON traces document (`{"resourceSpans": [...]}`)."""
    spans: list[RawSpan] = []
    for rs, resource, rs_where in _json_resources(doc, ("resourceSpans", "resource_spans")):
        scopes = _list_at(rs, ("scopeSpans", "scope_spans", "instrumentationLibrarySpans"),
                          rs_where)
        for s, ss in enumerate(scopes):
            ss_where = f"{rs_where}.scopeSpans[{s}]"
            for i, span in enumerate(_list_at(_obj(ss, ss_where), ("spans",), ss_where)):
                spans.append(_json_span(_obj(span, f"{ss_where}.spans[{i}]"), resource,
                                        f"{ss_where}.spans[{i}]"))
    _require_content(doc, spans, "resourceSpans")
    return spans


def _json_span(span: Mapping[str, Any], resource: Attributes, where: str) -> RawSpan:
    status = _obj(span.get("status") or {}, f"{where}.status")
    trace_id = _json_id(span.get("traceId"), f"{where}.traceId", 16, optional=False)
    span_id = _json_id(span.get("spanId"), f"{where}.spanId", 8, optional=False)
    assert trace_id is not None and span_id is not None
    events = []
    for e, event_item in enumerate(_list_at(span, ("events",), where)):
        e_where = f"{where}.events[{e}]"
        event = _obj(event_item, e_where)
        name = _json_str(event.get("name", ""), f"{e_where}.name")
        keep = name in _EVENTS_WITH_READ_ATTRIBUTES
        events.append(
            RawEvent(
                name=name,
                time_unix_ns=_json_int(event.get("timeUnixNano", 0), f"{e_where}.timeUnixNano"),
                attributes=_json_attrs(event.get("attributes"), f"{e_where}.attributes")
                if keep else {},
            )
        )
    return RawSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_json_id(span.get("parentSpanId"), f"{where}.parentSpanId", 8,
                                optional=True),
        name=_json_str(span.get("name", ""), f"{where}.name"),
        kind=_enum(span.get("kind", 0), SPAN_KIND_NAMES, "SPAN_KIND_", f"{where}.kind"),
        start_unix_ns=_json_int(span.get("startTimeUnixNano", 0), f"{where}.startTimeUnixNano"),
        end_unix_ns=_json_int(span.get("endTimeUnixNano", 0), f"{where}.endTimeUnixNano"),
        status_code=_enum(status.get("code", 0), ("UNSET", "OK", "ERROR"), "STATUS_CODE_",
                          f"{where}.status.code"),
        status_message=_json_str(status.get("message", ""), f"{where}.status.message"),
        attributes=_json_attrs(span.get("attributes"), f"{where}.attributes"),
        resource=resource,
        events=events,
    )


def _enum(value: Any, names: tuple[str, ...], prefix: str, where: str) -> int:
    # The collector writes integers; protobuf's canonical JSON writes names. Accept both.
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        name = value.upper().removeprefix(prefix)
        if name in names:
            return names.index(name)
        raise MalformedMessage(where, f"unknown value {value!r:.40}; expected one of {names}")
    number = _json_int(value, where)
    if not 0 <= number < len(names):
        raise MalformedMessage(where, f"value {number} out of range 0..{len(names) - 1}")
    return number


def decode_json_logs(doc: Mapping[str, Any]) -> list[RawLog]:
    """Log records of an OTLP JSON logs document (`{"resourceLogs": [...]}`)."""
    logs: list[RawLog] = []
    for rl, resource, rl_where in _json_resources(doc, ("resourceLogs", "resource_logs")):
        for s, sl in enumerate(_list_at(rl, ("scopeLogs", "scope_logs"), rl_where)):
            sl_where = f"{rl_where}.scopeLogs[{s}]"
            for i, rec_item in enumerate(_list_at(_obj(sl, sl_where), ("logRecords",),
                                                  sl_where)):
                where = f"{sl_where}.logRecords[{i}]"
                rec = _obj(rec_item, where)
                attributes = _json_attrs(rec.get("attributes"), f"{where}.attributes")
                time_ns = _json_int(rec.get("timeUnixNano") or rec.get("observedTimeUnixNano")
                                    or 0, f"{where}.timeUnixNano")
                logs.append(
                    RawLog(
                        trace_id=_json_id(rec.get("traceId"), f"{where}.traceId", 16,
                                          optional=True),
                        span_id=_json_id(rec.get("spanId"), f"{where}.spanId", 8, optional=True),
                        event_name=str(rec.get("eventName") or attributes.get("event.name") or ""),
                        time_unix_ns=time_ns,
                        attributes=attributes,
                        resource=resource,
                    )
                )
    _require_content(doc, logs, "resourceLogs")
    return logs


# --- flat JSON: one span per message -----------------------------------------------------------

_FLAT_STATUS = {"UNSET": STATUS_UNSET, "OK": STATUS_OK, "ERROR": STATUS_ERROR}


def decode_flat_span(doc: Mapping[str, Any]) -> RawSpan:
    """One span written as a flat JSON object (format documented in the README)."""
    attrs = doc.get("attributes") or {}
    resource = doc.get("resource") or {}
    if not isinstance(attrs, dict):
        raise MalformedMessage("attributes", f"must be an object, got {_kind(attrs)}")
    if not isinstance(resource, dict):
        raise MalformedMessage("resource", f"must be an object, got {_kind(resource)}")
    trace_id = _json_id(doc.get("trace_id"), "trace_id", 16, optional=False)
    span_id = _json_id(doc.get("span_id"), "span_id", 8, optional=False)
    assert trace_id is not None and span_id is not None
    status = doc.get("status_code", doc.get("status", "UNSET"))
    if isinstance(status, str):
        if status.upper().removeprefix("STATUS_CODE_") not in _FLAT_STATUS:
            raise MalformedMessage("status_code", f"unknown status {status!r:.40}")
        status_code = _FLAT_STATUS[status.upper().removeprefix("STATUS_CODE_")]
    else:
        status_code = _enum(status, ("UNSET", "OK", "ERROR"), "", "status_code")
    events = []
    for e, event_item in enumerate(_list_at(doc, ("events",), "")):
        event = _obj(event_item, f"events[{e}]")
        name = str(event.get("name", ""))
        event_attrs = event.get("attributes") or {}
        events.append(RawEvent(
            name=name,
            time_unix_ns=_flat_time(event, "time", f"events[{e}]"),
            attributes=_flat_attrs(event_attrs, f"events[{e}].attributes")
            if name in _EVENTS_WITH_READ_ATTRIBUTES else {},
        ))
    kind = doc.get("kind", 0)
    return RawSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_json_id(doc.get("parent_span_id"), "parent_span_id", 8, optional=True),
        name=str(doc.get("name", "")),
        kind=_enum(kind, SPAN_KIND_NAMES, "SPAN_KIND_", "kind"),
        start_unix_ns=_flat_time(doc, "start_time", ""),
        end_unix_ns=_flat_time(doc, "end_time", ""),
        status_code=status_code,
        status_message=str(doc.get("status_message", "")),
        attributes=_flat_attrs(attrs, "attributes"),
        resource=_flat_attrs(resource, "resource"),
        events=events,
    )


def _flat_attrs(attrs: Any, where: str) -> Attributes:
    if not isinstance(attrs, dict):
        raise MalformedMessage(where, f"must be an object, got {_kind(attrs)}")
    out: Attributes = {}
    for key, value in attrs.items():
        if is_content_key(key):
            continue
        if isinstance(value, dict):
            raise MalformedMessage(f"{where}.{key}", "nested objects are not attribute values")
        out[key] = value
    return out


def _flat_time(doc: Mapping[str, Any], stem: str, where: str) -> int:
    prefix = f"{where}." if where else ""
    if f"{stem}_unix_nano" in doc:
        return _json_int(doc[f"{stem}_unix_nano"], f"{prefix}{stem}_unix_nano")
    if stem in doc:
        value = doc[stem]
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise MalformedMessage(f"{prefix}{stem}",
                                       f"{value!r:.40} is not an ISO 8601 time") from None
            if parsed.tzinfo is None:
                raise MalformedMessage(f"{prefix}{stem}", f"{value!r:.40} has no time zone")
            return int(parsed.timestamp() * 1e9)
        raise MalformedMessage(f"{prefix}{stem}", f"expected an ISO 8601 string, got "
                                                  f"{_kind(value)}")
    raise MalformedMessage(where, f"missing `{stem}` or `{stem}_unix_nano`")


# --- entry point -------------------------------------------------------------------------------


def decode_raw(value: bytes | None, encoding: Encoding, signal: Signal) -> RawBatch:
    """Decode one message value of the given (or detected) encoding."""
    if not value:
        raise MalformedMessage("", "empty message value")
    if encoding == "auto":
        encoding = detect_encoding(value)
        if encoding == "otlp_proto" and value[:1] == b"\n" and value.lstrip()[:1] == b"{":
            # 0x0A is both the first byte of every OTLP request and a JSON newline.
            try:
                return decode_raw(value, "otlp_proto", signal)
            except MalformedMessage:
                encoding = "otlp_json"
    if encoding == "otlp_proto":
        if signal == "logs":
            return RawBatch(spans=[], logs=decode_proto_logs(value))
        return RawBatch(spans=decode_proto_traces(value), logs=[])
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage("", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("", f"JSON message must be an object, got {_kind(doc)}")
    return decode_json_doc(doc)


def detect_encoding(value: bytes) -> Encoding:
    """JSON when the value starts like JSON, else OTLP protobuf. (`{` and `[` can never start
    an OTLP request: as protobuf tags they are field 15 / field 11 with a group wire type.)"""
    return "otlp_json" if value[:1] in (b"{", b"[", b" ", b"\t", b"\r") else "otlp_proto"


def decode_json_doc(doc: Mapping[str, Any]) -> RawBatch:
    """A parsed JSON document: OTLP traces, OTLP logs, or one flat span (told apart by keys)."""
    if "resourceSpans" in doc or "resource_spans" in doc:
        return RawBatch(spans=decode_json_traces(doc), logs=[])
    if "resourceLogs" in doc or "resource_logs" in doc:
        return RawBatch(spans=[], logs=decode_json_logs(doc))
    if "trace_id" in doc or "span_id" in doc:
        return RawBatch(spans=[decode_flat_span(doc)], logs=[])
    keys = ", ".join(list(doc)[:5]) or "none"
    raise MalformedMessage("", f"JSON object is neither OTLP (resourceSpans / resourceLogs) nor a "
                               f"flat span (trace_id, span_id); keys: {keys}")


def _kind(value: Any) -> str:
    return type(value).__name__

