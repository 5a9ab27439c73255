#!/usr/bin/env python3
# ruff: noqa: PLC0415  -- instrumentation/OTel imports must follow the per-dialect env setup
# The instrumentation libraries are deliberately not project dependencies (see README.md):
# mypy: disable-error-code="import-not-found,import-untyped,no-untyped-call"
r"""Generate real GenAI span fixtures, one set per instrumentation dialect.

The real ``openai`` Python SDK is instrumented with a real instrumentation
library and pointed at a fake OpenAI-compatible HTTP server started by this
script on 127.0.0.1 (no network beyond loopback).  Seven scenarios are run,
each inside an application root span ``POST /chat`` (SpanKind.SERVER), and
the finished spans / log records are written in the OpenTelemetry Collector
file exporter's ``proto`` format (each message prefixed by a 4-byte
big-endian length; one ExportTraceServiceRequest per scenario/trace).

Outputs (next to this file, or ``--out DIR``)::

    <dialect>.otlp.pb         traces, one ExportTraceServiceRequest per scenario
    <dialect>.logs.otlp.pb    logs/events (only if the library emitted any)
    <dialect>.manifest.json   versions, semconv mode, per-scenario trace ids

Dialects (the spanwatch project itself does NOT depend on any of these)::

    otel_genai         opentelemetry-instrumentation-openai-v2 2.4b0 with
                       opentelemetry-util-genai==0.4b0, default semconv
                       (GenAI v1.30.0, events emitted as log records)
    otel_genai_latest  same library, OTEL_SEMCONV_STABILITY_OPT_IN=
                       gen_ai_latest_experimental
    openllmetry        opentelemetry-instrumentation-openai (Traceloop) +
                       traceloop-sdk's context API / span processor
                       (separate venv: traceloop-sdk installed --no-deps)
    openinference      openinference-instrumentation-openai (Arize)

Venv setup (README.md next to this file has the exact commands and why
util-genai must be pinned and httpx added)::

    python3 -m venv /tmp/fixturegen-venv
    /tmp/fixturegen-venv/bin/pip install openai opentelemetry-sdk \
        opentelemetry-exporter-otlp-proto-common \
        opentelemetry-instrumentation-openai-v2 \
        opentelemetry-instrumentation-openai openinference-instrumentation-openai
    /tmp/fixturegen-venv/bin/pip install opentelemetry-util-genai==0.4b0 httpx
    # /tmp/fixturegen-venv-traceloop: see README.md

Run all dialects (each one in its own subprocess, so each instrumentation
patches a fresh ``openai`` import)::

    /tmp/fixturegen-venv/bin/python tests/data/dialects/generate.py \
        --python openllmetry=/tmp/fixturegen-venv-traceloop/bin/python

Run a single dialect in the current interpreter::

    /tmp/fixturegen-venv/bin/python tests/data/dialects/generate.py \
        --dialect openinference
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import contextvars
import json
import os
import platform
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

HERE = Path(__file__).resolve().parent

REQUEST_MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
EMBEDDING_MODEL = "text-embedding-3-small"
SYSTEM_FINGERPRINT = "fp_0ba0d124f1"
DEFAULT_PORT = 47011
FIRST_CHUNK_DELAY_S = 0.080
INTER_CHUNK_DELAY_S = 0.015
NON_STREAM_DELAY_S = 0.030

RESOURCE_ATTRIBUTES = {
    "service.name": "support-bot",
    "service.version": "1.4.2",
    "deployment.environment": "prod",
}

# Application-level attributes every dialect's root span carries, using the
# reference names spanwatch understands natively.
APP_ATTRIBUTES = {
    "app.prompt_template_version": "support-v7",
    "app.model_version": RESPONSE_MODEL,
    "session.id": "sess-0001",
    "user.id": "user-42",
}
PROMPT_TEMPLATE = "You are a support agent for {product}. Answer briefly."
PROMPT_VARIABLES = {"product": "Acme Router"}


class DialectConfig(TypedDict):
    distribution: str
    semconv_mode: str
    env: dict[str, str]
    unset_env: list[str]
    notes: list[str]


DIALECTS: dict[str, DialectConfig] = {
    "otel_genai": {
        "distribution": "opentelemetry-instrumentation-openai-v2",
        "semconv_mode": "default (GenAI semconv v1.30.0; no opt-in)",
        "env": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
        "unset_env": ["OTEL_SEMCONV_STABILITY_OPT_IN"],
        "notes": [
            (
                "opentelemetry-util-genai pinned to 0.4b0: openai-v2 2.4b0 cannot import "
                "util-genai 1.3b0 (no opentelemetry.util.genai.instruments), and util-genai >= "
                "1.0b0 makes is_experimental_mode() always True, i.e. the default v1.30 mode "
                "would be unreachable."
            ),
            (
                "openai>=3 builds its client on httpx2, so client.base_url is an httpx2.URL; "
                "openai-v2 only recognises httpx.URL (and imports httpx without declaring it), so "
                "server.address / server.port are ABSENT here. With openai 2.54.0 the same "
                "library also emits server.address (str) and server.port (int); nothing else "
                "differs."
            ),
            (
                "Streaming spans carry no gen_ai.response.finish_reasons (LegacyChatStreamWrapper "
                "never fills its finish_reasons list); the gen_ai.choice log event does carry "
                "finish_reason."
            ),
        ],
    },
    "otel_genai_latest": {
        "distribution": "opentelemetry-instrumentation-openai-v2",
        "semconv_mode": "OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental",
        # In the latest mode "true" is not accepted (util-genai logs a warning
        # and captures nothing); SPAN_AND_EVENT captures content on the span
        # (gen_ai.input.messages / gen_ai.output.messages ...) and in the
        # gen_ai.client.inference.operation.details event.
        "env": {
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
            "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT": "true",
        },
        "unset_env": [],
        "notes": [
            (
                "Same library/venv as otel_genai (opentelemetry-util-genai 0.4b0); chat spans "
                "come from the util-genai TelemetryHandler (scope "
                "opentelemetry.util.genai.handler), embeddings spans still from scope "
                "opentelemetry.instrumentation.openai_v2."
            ),
            (
                "openai>=3 builds its client on httpx2, so client.base_url is an httpx2.URL; "
                "openai-v2 only recognises httpx.URL (and imports httpx without declaring it), so "
                "server.address / server.port are ABSENT here. With openai 2.54.0 the same "
                "library also emits server.address (str) and server.port (int); nothing else "
                "differs."
            ),
            (
                "Streaming spans carry no gen_ai.response.finish_reasons (ChatStreamWrapper never "
                "fills its finish_reasons list); gen_ai.output.messages does carry finish_reason."
            ),
        ],
    },
    "openllmetry": {
        "distribution": "opentelemetry-instrumentation-openai",
        "semconv_mode": (
            "Traceloop OpenLLMetry defaults (use_attributes=True, TRACELOOP_TRACE_CONTENT=true)"
        ),
        "env": {
            "TRACELOOP_TRACE_CONTENT": "true",
            "TRACELOOP_TELEMETRY": "false",
            "TRACELOOP_SUPPRESS_WARNINGS": "true",
        },
        "unset_env": [],
        "notes": [
            (
                "Separate venv: traceloop-sdk 0.62.4 installed with --no-deps (+ its "
                "non-instrumentation deps) because its ~40 unpinned "
                "opentelemetry-instrumentation-* requirements make pip backtrack for >15 min / "
                "fail to resolve. Only its context API and default span processor are used; "
                "Traceloop.init() is not called."
            ),
            (
                "That venv has opentelemetry-api/sdk 1.45.1 "
                "(opentelemetry-instrumentation-threading 0.66b1 pins it); other dialects use "
                "1.45.2."
            ),
        ],
    },
    "openinference": {
        "distribution": "openinference-instrumentation-openai",
        "semconv_mode": "OpenInference semantic conventions (default TraceConfig: nothing hidden)",
        "env": {},
        "unset_env": [],
        "notes": [],
    },
}

# --------------------------------------------------------------------------
# Fake OpenAI-compatible server
# --------------------------------------------------------------------------

SCENARIO_USAGE: dict[str, tuple[int, int, int, int, int]] = {
    # prompt, completion, total, cached, reasoning
    "chat": (57, 23, 80, 32, 8),
    "chat_stream": (61, 12, 73, 16, 4),
    "tool_call": (88, 19, 107, 64, 0),
    "length": (45, 16, 61, 0, 0),
}


def _usage(scenario: str) -> dict[str, Any]:
    p, c, t, cached, reasoning = SCENARIO_USAGE[scenario]
    return {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": t,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


CHAT_TEXT = "You can reset the Acme Router by holding the reset button for 10 seconds."
STREAM_PIECES = ["Your order ", "A-1001 ", "shipped ", "yesterday."]
LENGTH_TEXT = "The Acme Router supports three operating modes: bridge, router and"
TOOL_CALL = {
    "id": "call_Qx3fKp9ZtR2mLw8v",
    "type": "function",
    "function": {"name": "get_order_status", "arguments": '{"order_id": "A-1001"}'},
}
EMBEDDING = [0.0123, -0.0456, 0.0789, -0.0012, 0.0345, -0.0678, 0.0901, -0.0234]

ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "rate_limit": (
        429,
        {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
    ),
    "context_length": (
        400,
        {
            "error": {
                "message": (
                    "This model's maximum context length is 128000 tokens. However, "
                    "your messages resulted in 131072 tokens. Please reduce the length "
                    "of the messages."
                ),
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
}


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1.0"
    _counter = 0
    _lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:  # keep output quiet
        pass

    def _next_id(self, prefix: str) -> str:
        with FakeOpenAIHandler._lock:
            FakeOpenAIHandler._counter += 1
            n = FakeOpenAIHandler._counter
        return f"{prefix}{n:04d}fixture{int(time.time())}"

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", self._next_id("req_"))
        self.send_header("openai-processing-ms", "31")
        if status == 429:
            self.send_header("retry-after", "1")
            self.send_header("x-ratelimit-remaining-requests", "0")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            req = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(
                400,
                {"error": {"message": "bad json", "type": "invalid_request_error", "code": None}},
            )
            return
        # The driver tells the server which scenario comes next (calls are
        # sequential), so nothing fixture-specific travels in the request
        # (Traceloop records extra_headers as gen_ai.headers).
        scenario = getattr(self.server, "next_scenario", "")
        if scenario in ERRORS:
            status, body = ERRORS[scenario]
            self._send_json(status, body)
            return
        if self.path.rstrip("/").endswith("/chat/completions"):
            self._chat(req, scenario)
        elif self.path.rstrip("/").endswith("/embeddings"):
            self._embeddings(req)
        else:
            self._send_json(
                404,
                {
                    "error": {
                        "message": f"unknown path {self.path}",
                        "type": "invalid_request_error",
                        "code": None,
                    }
                },
            )

    # -- chat -------------------------------------------------------------
    def _chat(self, req: dict[str, Any], scenario: str) -> None:
        if req.get("stream"):
            self._chat_stream(req, scenario or "chat_stream")
            return
        time.sleep(NON_STREAM_DELAY_S)
        scenario = scenario or "chat"
        if scenario == "tool_call":
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [TOOL_CALL],
                "refusal": None,
                "annotations": [],
            }
            finish = "tool_calls"
        elif scenario == "length":
            message = {
                "role": "assistant",
                "content": LENGTH_TEXT,
                "refusal": None,
                "annotations": [],
            }
            finish = "length"
        else:
            scenario = "chat"
            message = {
                "role": "assistant",
                "content": CHAT_TEXT,
                "refusal": None,
                "annotations": [],
            }
            finish = "stop"
        body = {
            "id": self._next_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": RESPONSE_MODEL,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": _usage(scenario),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        self._send_json(200, body)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _chat_stream(self, req: dict[str, Any], scenario: str) -> None:
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        cid = self._next_id("chatcmpl-")
        created = int(time.time())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-request-id", self._next_id("req_"))
        self.end_headers()
        self.wfile.flush()

        def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
            c = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": RESPONSE_MODEL,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
            }
            if include_usage:
                c["usage"] = usage
            return b"data: " + json.dumps(c).encode() + b"\n\n"

        time.sleep(FIRST_CHUNK_DELAY_S)  # measurable time-to-first-token
        self._write_chunk(
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        )
        for piece in STREAM_PIECES:
            time.sleep(INTER_CHUNK_DELAY_S)
            self._write_chunk(
                chunk(
                    [
                        {
                            "index": 0,
                            "delta": {"content": piece},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
            )
        time.sleep(INTER_CHUNK_DELAY_S)
        self._write_chunk(
            chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        )
        if include_usage:
            self._write_chunk(chunk([], usage=_usage("chat_stream")))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # terminating zero-length chunk

    # -- embeddings -------------------------------------------------------
    def _embeddings(self, req: dict[str, Any]) -> None:
        time.sleep(NON_STREAM_DELAY_S)
        if req.get("encoding_format") == "base64":
            vec: str | list[float] = base64.b64encode(
                struct.pack(f"<{len(EMBEDDING)}f", *EMBEDDING)
            ).decode()
        else:
            vec = EMBEDDING
        body = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vec}],
            "model": EMBEDDING_MODEL,
            "usage": {"prompt_tokens": 9, "total_tokens": 9},
        }
        self._send_json(200, body)


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True
    next_scenario = ""

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the client closing an idle keep-alive connection is not an error
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def start_server(port: int) -> FakeOpenAIServer:
    try:
        server = FakeOpenAIServer(("127.0.0.1", port), FakeOpenAIHandler)
    except OSError:
        server = FakeOpenAIServer(("127.0.0.1", 0), FakeOpenAIHandler)
    threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True).start()
    return server


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": PROMPT_TEMPLATE.format(**PROMPT_VARIABLES)},
    {"role": "user", "content": "How do I reset my router?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Look up the shipping status of an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]

SCENARIOS: list[tuple[str, dict[str, Any]]] = [
    # name, expected facts (for tests; the server answers accordingly)
    (
        "chat",
        {
            "operation": "chat",
            "stream": False,
            "finish_reasons": ["stop"],
            "usage": SCENARIO_USAGE["chat"],
        },
    ),
    (
        "chat_stream",
        {
            "operation": "chat",
            "stream": True,
            "finish_reasons": ["stop"],
            "usage": SCENARIO_USAGE["chat_stream"],
            "first_chunk_delay_ms": int(FIRST_CHUNK_DELAY_S * 1000),
        },
    ),
    (
        "tool_call",
        {
            "operation": "chat",
            "stream": False,
            "finish_reasons": ["tool_calls"],
            "usage": SCENARIO_USAGE["tool_call"],
        },
    ),
    (
        "length",
        {
            "operation": "chat",
            "stream": False,
            "finish_reasons": ["length"],
            "usage": SCENARIO_USAGE["length"],
        },
    ),
    ("embeddings", {"operation": "embeddings", "stream": False, "usage": (9, None, 9, None, None)}),
    (
        "rate_limit",
        {
            "operation": "chat",
            "stream": False,
            "error": {
                "http_status": 429,
                "code": "rate_limit_exceeded",
                "exception": "openai.RateLimitError",
            },
        },
    ),
    (
        "context_length",
        {
            "operation": "chat",
            "stream": False,
            "error": {
                "http_status": 400,
                "code": "context_length_exceeded",
                "exception": "openai.BadRequestError",
            },
        },
    ),
]


def call_openai(client: Any, scenario: str) -> Any:
    import openai

    if scenario == "chat":
        return client.chat.completions.create(
            model=REQUEST_MODEL, messages=MESSAGES, temperature=0.2, max_tokens=256
        )
    if scenario == "chat_stream":
        stream = client.chat.completions.create(
            model=REQUEST_MODEL,
            messages=[MESSAGES[0], {"role": "user", "content": "Where is my order A-1001?"}],
            temperature=0.2,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = []
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    pieces.append(choice.delta.content)
        return "".join(pieces)
    if scenario == "tool_call":
        return client.chat.completions.create(
            model=REQUEST_MODEL,
            messages=[
                MESSAGES[0],
                {"role": "user", "content": "What is the status of order A-1001?"},
            ],
            tools=TOOLS,
            tool_choice="auto",
        )
    if scenario == "length":
        return client.chat.completions.create(
            model=REQUEST_MODEL,
            messages=[
                MESSAGES[0],
                {"role": "user", "content": "List every operating mode in detail."},
            ],
            max_tokens=16,
        )
    if scenario == "embeddings":
        return client.embeddings.create(model=EMBEDDING_MODEL, input="How do I reset my router?")
    if scenario in ("rate_limit", "context_length"):
        try:
            client.chat.completions.create(model=REQUEST_MODEL, messages=MESSAGES)
        except openai.APIStatusError as exc:  # caught like an app would
            return exc
        raise RuntimeError(f"scenario {scenario} did not raise")
    raise ValueError(scenario)


# --------------------------------------------------------------------------
# Per-dialect setup
# --------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


AppContext = Callable[[], contextlib.AbstractContextManager[Any]]


def setup_dialect(
    dialect: str, tracer_provider: Any, logger_provider: Any
) -> tuple[AppContext, str]:
    """Instrument openai; return (app_context_factory, notes)."""
    if dialect in ("otel_genai", "otel_genai_latest"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(
            tracer_provider=tracer_provider, logger_provider=logger_provider
        )
        return contextlib.nullcontext, (
            "Only the app root span carries app.prompt_template_version / app.model_version / "
            "session.id / "
            "user.id: this library reads nothing app-specific from the OTel Context "
            "(util-genai 0.4b0 has no "
            "ambient gen_ai.conversation.id; that arrived in util-genai 1.2b0, which "
            "openai-v2 2.4b0 cannot "
            "import), so the LLM spans carry no session/user/template attributes."
        )

    if dialect == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(
            tracer_provider=tracer_provider, logger_provider=logger_provider
        )
        try:
            from traceloop import sdk as traceloop_sdk
        except ImportError:  # pragma: no cover - documented fallback
            traceloop_sdk = None

        @contextlib.contextmanager
        def app_ctx() -> Iterator[None]:
            if traceloop_sdk is not None:
                # What an app does in its request handler with traceloop-sdk.
                traceloop_sdk.Traceloop.set_association_properties(
                    {
                        "session_id": APP_ATTRIBUTES["session.id"],
                        "user_id": APP_ATTRIBUTES["user.id"],
                    }
                )
                traceloop_sdk.Traceloop.set_prompt(
                    PROMPT_TEMPLATE, PROMPT_VARIABLES, APP_ATTRIBUTES["app.prompt_template_version"]
                )
            yield

        return app_ctx, (
            "traceloop-sdk's span processor (Traceloop.get_default_span_processor, i.e. "
            "default_span_processor_on_start) stamps context values on spans at start; the "
            "app calls "
            "Traceloop.set_association_properties({'session_id','user_id'}) and "
            "Traceloop.set_prompt(template, variables, version) inside the root span, so the "
            "LLM spans "
            "(not the root span, which already started) get traceloop.association.properties.* and "
            "traceloop.prompt.*. Traceloop.init() is NOT called (no exporter/network)."
        )

    if dialect == "openinference":
        from openinference.instrumentation import using_attributes
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)

        def app_ctx() -> Any:
            return using_attributes(
                session_id=APP_ATTRIBUTES["session.id"],
                user_id=APP_ATTRIBUTES["user.id"],
                metadata={"app.model_version": APP_ATTRIBUTES["app.model_version"]},
                tags=["support", "prod"],
                prompt_template=PROMPT_TEMPLATE,
                prompt_template_version=APP_ATTRIBUTES["app.prompt_template_version"],
                prompt_template_variables=PROMPT_VARIABLES,
            )

        return app_ctx, (
            "The app wraps the OpenAI call in "
            "openinference.instrumentation.using_attributes(session_id, user_id, "
            "metadata, tags, prompt_template, prompt_template_version, "
            "prompt_template_variables); OITracer copies "
            "them onto the LLM span (session.id, user.id, metadata, tag.tags, "
            "llm.prompt_template.*)."
        )
    raise ValueError(dialect)


def library_version(dialect: str) -> tuple[str, str | None]:
    dist = DIALECTS[dialect]["distribution"]
    return dist, _version(dist)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def write_length_prefixed(path: Path, messages: Iterable[Any]) -> None:
    with path.open("wb") as fh:
        for msg in messages:
            data = msg.SerializeToString()
            fh.write(struct.pack(">I", len(data)))
            fh.write(data)


def run_dialect(dialect: str, out_dir: Path, port: int) -> None:
    cfg = DIALECTS[dialect]
    for k in cfg["unset_env"]:
        os.environ.pop(k, None)
    os.environ.update(cfg["env"])

    from opentelemetry import _logs, trace
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    try:
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogExporter
    except ImportError:  # older SDKs
        from opentelemetry.sdk._logs.export import InMemoryLogExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    resource = Resource.create(RESOURCE_ATTRIBUTES)
    span_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    processor_note = "SimpleSpanProcessor(InMemorySpanExporter)"
    if dialect == "openllmetry":
        try:
            from traceloop.sdk import Traceloop

            tracer_provider.add_span_processor(
                Traceloop.get_default_span_processor(disable_batch=True, exporter=span_exporter)
            )
            processor_note = (
                "Traceloop.get_default_span_processor(disable_batch=True, "
                "exporter=InMemorySpanExporter)"
            )
        except ImportError:
            tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
            processor_note += " (traceloop-sdk not importable: no association properties!)"
    else:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)

    log_exporter = InMemoryLogExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    _logs.set_logger_provider(logger_provider)

    app_ctx, app_note = setup_dialect(dialect, tracer_provider, logger_provider)

    import openai

    server = start_server(port)
    host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    client = openai.OpenAI(
        api_key="sk-fixture-not-a-real-key",
        base_url=f"http://{host}:{bound_port}/v1",
        max_retries=0,
    )
    app_tracer = tracer_provider.get_tracer("support_bot.http", "1.4.2")

    scenario_results: list[tuple[str, dict[str, Any], int, int, Any]] = []
    for name, expected in SCENARIOS:

        def one(name: str = name) -> tuple[int, int, Any]:
            attrs = {
                "http.request.method": "POST",
                "http.route": "/chat",
                "url.path": "/chat",
                **APP_ATTRIBUTES,
            }
            with app_tracer.start_as_current_span(
                "POST /chat", kind=SpanKind.SERVER, attributes=attrs
            ) as root:
                with app_ctx():
                    result = call_openai(client, name)
                if isinstance(result, openai.APIStatusError):
                    root.set_attribute("http.response.status_code", 502)
                    root.set_status(Status(StatusCode.ERROR))
                else:
                    root.set_attribute("http.response.status_code", 200)
                ctx = root.get_span_context()
                return ctx.trace_id, ctx.span_id, result

        # fresh copy of the (empty) context per scenario so context values
        # attached by the dialect's app API never leak between scenarios
        server.next_scenario = name
        trace_id, root_span_id, result = contextvars.Context().run(one)
        scenario_results.append((name, expected, trace_id, root_span_id, result))
        time.sleep(0.01)

    tracer_provider.force_flush()
    logger_provider.force_flush()
    spans = list(span_exporter.get_finished_spans())
    logs = list(log_exporter.get_finished_logs())
    server.shutdown()

    trace_messages: list[Any] = []
    log_messages: list[Any] = []
    manifest_scenarios: list[dict[str, Any]] = []
    for name, expected, trace_id, root_span_id, _result in scenario_results:
        t_spans = [s for s in spans if s.context.trace_id == trace_id]
        t_logs = [r for r in logs if r.log_record.trace_id == trace_id]
        trace_messages.append(encode_spans(t_spans))
        if t_logs:
            log_messages.append(encode_logs(t_logs))
        llm_spans = [s for s in t_spans if s.context.span_id != root_span_id]
        exp: dict[str, Any] = dict(expected)
        usage = exp.pop("usage", None)
        if usage:
            exp["usage"] = dict(
                zip(("input", "output", "total", "cached_input", "reasoning"), usage, strict=True)
            )
        exp.update(
            {
                "request_model": EMBEDDING_MODEL if name == "embeddings" else REQUEST_MODEL,
                "response_model": None
                if "error" in exp
                else (EMBEDDING_MODEL if name == "embeddings" else RESPONSE_MODEL),
            }
        )
        manifest_scenarios.append(
            {
                "name": name,
                "trace_id": f"{trace_id:032x}",
                "root_span_id": f"{root_span_id:016x}",
                "llm_spans": [
                    {
                        "span_id": f"{s.context.span_id:016x}",
                        "name": s.name,
                        "kind": s.kind.name,
                        "scope": s.instrumentation_scope.name if s.instrumentation_scope else None,
                    }
                    for s in llm_spans
                ],
                "log_record_count": len(t_logs),
                "ground_truth": exp,
            }
        )
    orphan_logs = [
        r
        for r in logs
        if not any(r.log_record.trace_id == tid for _, _, tid, _, _ in scenario_results)
    ]
    if orphan_logs:
        log_messages.append(encode_logs(orphan_logs))

    out_dir.mkdir(parents=True, exist_ok=True)
    traces_file = out_dir / f"{dialect}.otlp.pb"
    logs_file = out_dir / f"{dialect}.logs.otlp.pb"
    write_length_prefixed(traces_file, trace_messages)
    if log_messages:
        write_length_prefixed(logs_file, log_messages)
    elif logs_file.exists():
        logs_file.unlink()

    dist, ver = library_version(dialect)
    manifest = {
        "dialect": dialect,
        "source": (
            "real run: real openai SDK + real instrumentation library against a local "
            "fake OpenAI-compatible server"
        ),
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "generator": "tests/data/dialects/generate.py",
        "library": {"name": dist, "version": ver},
        "venv_packages": {
            k: _version(k)
            for k in (
                "openai",
                "opentelemetry-api",
                "opentelemetry-sdk",
                "opentelemetry-semantic-conventions",
                "opentelemetry-util-genai",
                "opentelemetry-exporter-otlp-proto-common",
                "opentelemetry-semantic-conventions-ai",
                "traceloop-sdk",
                "openinference-instrumentation",
                "openinference-semantic-conventions",
                "protobuf",
            )
            if _version(k)
        },
        "openai_version": _version("openai"),
        "python": platform.python_version(),
        "semconv_mode": cfg["semconv_mode"],
        "env": {
            **dict(cfg["env"]),
            **dict.fromkeys(cfg["unset_env"], "<unset>"),
        },
        "span_processor": processor_note,
        "app_context": app_note,
        "resource": RESOURCE_ATTRIBUTES,
        "app_root_span": {"name": "POST /chat", "kind": "SERVER", "attributes": APP_ATTRIBUTES},
        "fake_server": {
            "request_model": REQUEST_MODEL,
            "response_model": RESPONSE_MODEL,
            "embedding_model": EMBEDDING_MODEL,
            "address": f"{host}:{bound_port}",
            "first_chunk_delay_ms": int(FIRST_CHUNK_DELAY_S * 1000),
            "inter_chunk_delay_ms": int(INTER_CHUNK_DELAY_S * 1000),
            "openai_client_max_retries": 0,
            "scenario_selection": (
                "server-side (driver sets the next scenario before each call); "
                "requests carry no fixture-specific headers"
            ),
        },
        "files": {
            "traces": traces_file.name,
            "logs": logs_file.name if log_messages else None,
            "format": (
                "OTel Collector file exporter 'proto' format: repeated [uint32 big-endian "
                "length][ExportTraceServiceRequest|ExportLogsServiceRequest]; one message "
                "per scenario, in scenario order"
            ),
        },
        "span_count": len(spans),
        "log_record_count": len(logs),
        "notes": cfg["notes"],
        "scenarios_ground_truth_note": (
            "ground_truth = what the fake server returned / the client requested; "
            "a dialect may record only part of it"
        ),
        "scenarios": manifest_scenarios,
    }
    (out_dir / f"{dialect}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{dialect}: {len(spans)} spans, {len(logs)} log records -> {traces_file}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dialect", default="all", choices=["all", *DIALECTS])
    ap.add_argument(
        "--out", default=str(HERE), help="output directory (default: next to this script)"
    )
    ap.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="fake server port on 127.0.0.1 (falls back to an ephemeral port)",
    )
    ap.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="DIALECT=PATH",
        help="interpreter (venv) to use for a dialect when running all; default: this interpreter",
    )
    args = ap.parse_args(argv)

    if args.dialect != "all":
        run_dialect(args.dialect, Path(args.out), args.port)
        return 0

    pythons = dict(p.split("=", 1) for p in args.python)
    rc = 0
    for dialect in DIALECTS:
        py = pythons.get(dialect, sys.executable)
        cmd = [
            py,
            str(Path(__file__).resolve()),
            "--dialect",
            dialect,
            "--out",
            args.out,
            "--port",
            str(args.port),
        ]
        print("+", " ".join(cmd), flush=True)
        res = subprocess.run(cmd, check=False)
        rc = rc or res.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
