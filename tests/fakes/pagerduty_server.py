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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fakes.http_fake import HttpFake, RecordedRequest, Scripted

__all__ = ["THROTTLED", "FakePagerDuty", "RecordedRequest", "Scripted", "self_signed_tls",
           "server_error"]

ROUTING_KEY_LENGTH = 32  # PagerDuty integration keys are 32 characters
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


THROTTLED = Scripted(429, {"status": "throttle event", "message": "Requests for this service "
                           "are arriving too quickly. Please retry later."})


def server_error(status: int = 500) -> Scripted:
    return Scripted(status, "<html><body><h1>Internal Server Error</h1></body></html>")


class FakePagerDuty(HttpFake):
    """Events API v2 on 127.0.0.1; `url` is the base to give the notifier."""

    json_content_type = "application/json"
    text_content_type = "text/html"

    def __init__(self, routing_key: str, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__("pagerduty", tls=tls)
        self.routing_key = routing_key
        self.alerts: dict[str, str] = {}
        """dedup_key -> "triggered" | "resolved", as PagerDuty would hold it."""

    @property
    def url(self) -> str:
        return self.base_url

    def events(self, *, accepted_only: bool = False) -> list[dict[str, Any]]:
        """Bodies of the events posted to /v2/enqueue (optionally only those answered 202)."""
        return [r.json() for r in self.requests if r.path == "/v2/enqueue"
                and (not accepted_only or r.status == 202)]

    # --- the API ---------------------------------------------------------------------------
    def _answer(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> Scripted:
        if path != "/v2/enqueue" or method != "POST":
            return Scripted(404, {"status": "not found", "message": "Not Found"})
        scripted = self._scripted()
        if scripted is not None:
            return scripted
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
