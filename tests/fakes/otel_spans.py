"""Test spans made with the real OpenTelemetry SDK and encoded with the official OTLP encoder,
exactly as an SDK hands them to a collector; plus the collector's `otlp_json` rendering."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

T0_NS = 1_764_201_600_000_000_000  # 2025-11-27T00:00:00Z, a fixed event time for tests


class SpanRecorder:
    """A TracerProvider with an in-memory exporter: make spans, then take them out encoded."""

    def __init__(self, service: str = "support-bot", **resource: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(
            {"service.name": service, **resource}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("spanwatch-tests")

    @contextmanager
    def span(self, name: str, *, start_ns: int, end_ns: int,
             attributes: Mapping[str, Any] | None = None, kind: SpanKind = SpanKind.CLIENT,
             parent: trace.Span | None = None, error: str | None = None,
             events: Sequence[tuple[str, int, Mapping[str, Any]]] = ()) -> Iterator[trace.Span]:
        """A span with explicit event times; children made inside use it as parent."""
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(name, context=context, kind=kind,
                                      attributes=dict(attributes or {}), start_time=start_ns)
        for event_name, at_ns, event_attrs in events:
            span.add_event(event_name, dict(event_attrs), timestamp=at_ns)
        with trace.use_span(span, end_on_exit=False):
            yield span
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end_ns)

    def take(self) -> list[ReadableSpan]:
        """Finished spans in export order (children before their parents), then forget them."""
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans


def otlp_proto(spans: Sequence[ReadableSpan]) -> bytes:
    """ExportTraceServiceRequest bytes: the collector kafka exporter's `otlp_proto` value."""
    return bytes(encode_spans(spans).SerializeToString())


def otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    """The collector's `otlp_json` value: protobuf JSON with hex ids and integer enums."""
    doc = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in doc.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc).encode()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    """(trace id, span id) of an SDK span as spanwatch writes them."""
    ctx = span.get_span_context()
    assert ctx is not None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
