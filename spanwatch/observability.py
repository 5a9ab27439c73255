"""Self-observability of `spanwatch run`: Prometheus metrics, health endpoints, JSON logs.

One small HTTP server (stdlib, a daemon thread) serves
  /metrics  the Prometheus text format of every spanwatch_* metric (flows/instruments.py),
  /healthz  liveness: 200 while the flow runs, 503 once it stopped or crashed,
  /readyz   readiness: 200 once the flow started and rules are loaded, with a JSON body.
Consumer lag is Bytewax's own gauge, `bytewax_kafka_consumer_lag` (librdkafka statistics, every
second while the source polls), served on /metrics with ours.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from flows import instruments as _flow_instruments  # noqa: F401  # registers spanwatch_* on import
from notify import instruments as notify_instruments

log = logging.getLogger("spanwatch.observability")

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept in JSON.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, exception, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) \
                    else repr(value)
        return json.dumps(out, ensure_ascii=False)


JsonFormatter.converter = time.gmtime  # UTC, matching the "Z"


def configure_logging(log_format: str, level: str) -> None:
    """Root logging to stderr as text or JSON lines (`SPANWATCH_LOG_FORMAT=json`)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


@dataclass
class Health:
    """What the health endpoints report; the runner flips the flags, the server reads them."""

    started_at: float = field(default_factory=time.time)
    running: bool = False
    stopped_reason: str | None = None
    details: Callable[[], Mapping[str, Any]] = dict

    def body(self) -> dict[str, Any]:
        return {"status": "ok" if self.running else "down",
                "uptime_s": round(time.time() - self.started_at, 1),
                "stopped_reason": self.stopped_reason, **self.details()}


class _Handler(BaseHTTPRequestHandler):
    health: Health  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            body = self.health.body()
            status = 200 if self.health.running else 503
            self._send(status, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)  # scrapes every 15 s would flood INFO


class ObservabilityServer:
    """The /metrics, /healthz and /readyz endpoints on one port, in a daemon thread."""

    def __init__(self, host: str, port: int, health: Health) -> None:
        handler = type("Handler", (_Handler,), {"health": health})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="spanwatch-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("self-metrics on http://%s:%d/metrics (health /healthz, /readyz)",
                 self._server.server_address[0], self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Sampler:
    """Runs gauge-sampling callbacks every `interval_s` in a daemon thread, off the hot path
    (outbox depth is a SQLite query)."""

    def __init__(self, samples: list[Callable[[], object]], interval_s: float = 15.0) -> None:
        self._samples = samples
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spanwatch-sampler",
                                        daemon=True)

    def sample_now(self) -> None:
        for sample in self._samples:
            try:
                sample()
            except Exception:  # a failing gauge must not stop the others
                log.exception("self-metrics sampling failed")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        self.sample_now()
        while not self._stop.wait(self._interval_s):
            self.sample_now()


class PendingCounter(Protocol):
    def pending_count(self, receiver: str | None = None) -> int: ...


@dataclass
class Observability:
    """What `spanwatch run` starts next to the flow; `stop` ends it."""

    health: Health
    sampler: Sampler
    server: ObservabilityServer | None

    def stop(self, reason: str) -> None:
        self.health.running = False
        self.health.stopped_reason = reason
        self.sampler.stop()
        if self.server is not None:
            self.server.stop()


def start_observability(*, host: str, port: int | None,
                        outbox: PendingCounter, receivers: list[str],
                        details: Callable[[], Mapping[str, Any]] = dict) -> Observability:
    """Start the outbox sampler and, unless `port` is None, the HTTP endpoints."""

    def outbox_depth() -> None:
        for receiver in receivers:
            notify_instruments.OUTBOX_DEPTH.labels(receiver).set(outbox.pending_count(receiver))

    sampler = Sampler([outbox_depth])
    health = Health(running=True, details=details)
    server = ObservabilityServer(host, port, health) if port is not None else None
    sampler.start()
    if server is not None:
        server.start()
    return Observability(health, sampler, server)
