"""A local PagerDuty Events API v2 server (real HTTP on 127.0.0.1) for notifier tests.

Answers like https://developer.pagerduty.com/docs/events-api-v2/overview: POST /v2/enqueue
-> 202 {"status": "success", "message": "Event processed", "dedup_key": ...}; an invalid
event -> 400 {"status": "invalid event", "message": "Event object is invalid", "errors": [...]};
scripted 429 / 5xx answers; `down()` / `up()` refuse and accept connections on the same port.
It keeps the alert state per dedup_key (triggered / resolved) like PagerDuty deduplicates.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROUTING_KEY_LENGTH = 32  # PagerDuty integration keys are 32 characters
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes
    status: int
    """What the fake answered."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Scripted:
    """An answer to give instead of the normal one (429, 500 ...)."""

    status: int
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)


THROTTLED = Scripted(429, {"status": "throttle event", "message": "Requests for this service "
                           "are arriving too quickly. Please retry later."})


def server_error(status: int = 500) -> Scripted:
    return Scripted(status, "<html><body><h1>Internal Server Error</h1></body></html>")


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class FakePagerDuty:
    """Events API v2 on 127.0.0.1; `url` is the base to give the notifier."""

    def __init__(self, routing_key: str, *, tls: ssl.SSLContext | None = None) -> None:
        self.routing_key = routing_key
        self._tls = tls
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._script: deque[Scripted] = deque()
        self.alerts: dict[str, str] = {}
        """dedup_key -> "triggered" | "resolved", as PagerDuty would hold it."""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakePagerDuty:
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True,
                                        name=f"fake-pagerduty-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    down = stop
    """Refuse connections (the port stays reserved for `up`)."""

    def up(self) -> None:
        """Accept connections again on the same port."""
        self.start()

    def __enter__(self) -> FakePagerDuty:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # --- test API --------------------------------------------------------------------------
    def script(self, *answers: Scripted) -> None:
        """Answer the next requests with these, in order, then normally again."""
        with self._lock:
            self._script.extend(answers)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def events(self, *, accepted_only: bool = False) -> list[dict[str, Any]]:
        """Bodies of the events posted to /v2/enqueue (optionally only those answered 202)."""
        return [r.json() for r in self.requests if r.path == "/v2/enqueue"
                and (not accepted_only or r.status == 202)]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        """Wait until `predicate()` holds (checked after every request) or the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    # --- the API ---------------------------------------------------------------------------
    def _answer(self, method: str, path: str, body: bytes) -> Scripted:
        if path != "/v2/enqueue" or method != "POST":
            return Scripted(404, {"status": "not found", "message": "Not Found"})
        with self._lock:
            if self._script:
                return self._script.popleft()
        try:
            event = json.loads(body)
        except ValueError:
            return _invalid("Invalid JSON")
        if not isinstance(event, dict):
            return _invalid("Event object is not a JSON object")
        errors = self._validate(event)
        if errors:
            return _invalid(*errors)
        action = event["event_action"]
        key = event.get("dedup_key") or f"pd-{len(self.alerts) + 1:08d}"
        with self._lock:
            if action == "trigger":
                self.alerts[key] = "triggered"
            elif action == "resolve" and key in self.alerts:
                self.alerts[key] = "resolved"
        return Scripted(202, {"status": "success", "message": "Event processed",
                              "dedup_key": key})

    def _validate(self, event: dict[str, Any]) -> list[str]:
        errors = []
        key = event.get("routing_key")
        if not key:
            errors.append("'routing_key' is missing or blank")
        elif len(str(key)) != ROUTING_KEY_LENGTH:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        elif key != self.routing_key:
            errors.append("'routing_key' is invalid")
        action = event.get("event_action")
        if action not in ACTIONS:
            errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, "
                          "resolve)")
        dedup = event.get("dedup_key")
        if dedup is not None and len(str(dedup)) > 255:
            errors.append("'dedup_key' is too long (maximum 255 characters)")
        if action in ("acknowledge", "resolve") and not dedup:
            errors.append("'dedup_key' is missing or blank")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return [*errors, "'payload' is missing or blank"]
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    errors.append(f"'payload.{name}' is missing or blank")
            if len(str(payload.get("summary", ""))) > 1024:
                errors.append("'payload.summary' is too long (maximum 1024 characters)")
            if payload.get("severity") and payload["severity"] not in SEVERITIES:
                errors.append("'payload.severity' is invalid (must be one of: critical, "
                              "error, warning, info)")
        return errors

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._serve("POST")

            def do_GET(self) -> None:
                self._serve("GET")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = fake._answer(method, self.path, body)
                with fake._lock:  # recorded before answering: the client sees it done after
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    fake._requests.append(
                        RecordedRequest(method, self.path, headers, body, answer.status))
                    fake._lock.notify_all()
                payload = (answer.body if isinstance(answer.body, str)
                           else json.dumps(answer.body) if answer.body is not None else "")
                self.send_response(answer.status)
                is_json = not isinstance(answer.body, str)
                self.send_header("Content-Type",
                                 "application/json" if is_json else "text/html")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                data = payload.encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read `requests`

        return Handler


def _invalid(*errors: str) -> Scripted:
    return Scripted(400, {"status": "invalid event", "message": "Event object is invalid",
                          "errors": list(errors)})


@contextmanager
def self_signed_tls(directory: Path) -> Iterator[tuple[ssl.SSLContext, Path]]:
    """A server TLS context for 127.0.0.1 and the CA file a client needs (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl not found")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield context, cert
