#!/usr/bin/env python3
"""Human-readable dump of the dialect fixtures (inspection aid only).

Reads ``<dialect>.otlp.pb`` (and ``<dialect>.logs.otlp.pb`` if present) in the
collector file exporter proto format (4-byte big-endian length + message) and
prints, per scenario, every span (name, kind, status, attributes with their
OTLP value type, events with attributes and their offset from span start) and
the log records of that trace.  Needs only ``opentelemetry-proto``::

    /tmp/fixturegen-venv/bin/python tests/data/dialects/dump.py [DIALECT ...]
        [--llm-only] [--scenario NAME]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

HERE = Path(__file__).resolve().parent
DIALECTS = ["otel_genai", "otel_genai_latest", "openllmetry", "openinference"]


class _Parsable(Protocol):
    def ParseFromString(self, serialized: bytes, /) -> Any: ...  # noqa: N802 (protobuf API)


M = TypeVar("M", bound=_Parsable)


def read_messages(path: Path, cls: type[M]) -> Iterator[M]:
    data = path.read_bytes()
    off = 0
    while off < len(data):
        (n,) = struct.unpack_from(">I", data, off)
        off += 4
        msg = cls()
        msg.ParseFromString(data[off : off + n])
        off += n
        yield msg


def any_value(v: AnyValue) -> tuple[str, Any]:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return "str", v.string_value
    if kind == "int_value":
        return "int", v.int_value
    if kind == "double_value":
        return "double", v.double_value
    if kind == "bool_value":
        return "bool", v.bool_value
    if kind == "bytes_value":
        return "bytes", v.bytes_value.hex()
    if kind == "array_value":
        items = [any_value(x) for x in v.array_value.values]
        types = sorted({t for t, _ in items})
        return f"array<{'|'.join(types) or '?'}>", [x for _, x in items]
    if kind == "kvlist_value":
        return "kvlist", {kv.key: any_value(kv.value)[1] for kv in v.kvlist_value.values}
    return "empty", None


def short(val: Any, limit: int) -> str:
    s = json.dumps(val, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def print_attrs(attrs: Iterable[KeyValue], indent: str, limit: int) -> None:
    for kv in attrs:
        t, val = any_value(kv.value)
        print(f"{indent}{kv.key} ({t}) = {short(val, limit)}")


def dump(dialect: str, llm_only: bool, only_scenario: str | None, limit: int) -> None:
    manifest = json.loads((HERE / f"{dialect}.manifest.json").read_text())
    print("=" * 100)
    print(
        f"DIALECT {dialect}: {manifest['library']['name']} {manifest['library']['version']} "
        f"(openai {manifest['openai_version']}); {manifest['semconv_mode']}"
    )
    traces = list(read_messages(HERE / f"{dialect}.otlp.pb", ExportTraceServiceRequest))
    logs_path = HERE / f"{dialect}.logs.otlp.pb"
    logs = list(read_messages(logs_path, ExportLogsServiceRequest)) if logs_path.exists() else []
    log_by_trace: dict[str, list[tuple[str, LogRecord]]] = {}
    for req in logs:
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    log_by_trace.setdefault(rec.trace_id.hex(), []).append((sl.scope.name, rec))
    for sc, req in zip(manifest["scenarios"], traces, strict=True):
        if only_scenario and sc["name"] != only_scenario:
            continue
        print("-" * 100)
        print(f"scenario {sc['name']}  trace_id={sc['trace_id']}")
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    is_root = sp.span_id.hex() == sc["root_span_id"]
                    if llm_only and is_root:
                        continue
                    dur_ms = (sp.end_time_unix_nano - sp.start_time_unix_nano) / 1e6
                    print(
                        f"  SPAN {sp.name!r} kind={Span.SpanKind.Name(sp.kind)}"
                        f" scope={ss.scope.name}"
                        f" status={Status.StatusCode.Name(sp.status.code)}"
                        f"{' ' + repr(sp.status.message) if sp.status.message else ''}"
                        f" duration={dur_ms:.1f}ms"
                        f"{' [app root]' if is_root else ''}"
                    )
                    print_attrs(sp.attributes, "    ", limit)
                    for ev in sp.events:
                        off_ms = (ev.time_unix_nano - sp.start_time_unix_nano) / 1e6
                        print(f"    EVENT {ev.name!r} at +{off_ms:.1f}ms")
                        print_attrs(ev.attributes, "      ", limit)
        for scope, rec in log_by_trace.get(sc["trace_id"], []):
            t, body = any_value(rec.body)
            print(
                f"  LOG event_name={rec.event_name!r} scope={scope} span_id={rec.span_id.hex()} "
                f"severity={rec.severity_number}"
            )
            print_attrs(rec.attributes, "    ", limit)
            if body is not None:
                print(f"    body ({t}) = {short(body, limit)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dialects", nargs="*", default=DIALECTS)
    ap.add_argument("--llm-only", action="store_true", help="skip the app root span")
    ap.add_argument("--scenario")
    ap.add_argument("--limit", type=int, default=160, help="truncate values to this many chars")
    args = ap.parse_args()
    for d in args.dialects:
        if (HERE / f"{d}.otlp.pb").exists():
            dump(d, args.llm_only, args.scenario, args.limit)
        else:
            print(f"(no fixture for {d})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
