"""PagerDuty receiver: a `Notification` in, one Events API v2 event out (pagerduty package).

trigger/update/repeat send `event_action: trigger` (PagerDuty folds repeats of an open alert's
dedup_key into it), resolve sends `event_action: resolve` with the same dedup_key and routing
key. Events API v2: https://developer.pagerduty.com/docs/events-api-v2/overview
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pagerduty import Error as PagerDutyError
from pagerduty import EventsApiV2Client, UrlError
from pagerduty import HttpError as PagerDutyHttpError
from pydantic import SecretStr

from notify.records import Delivered, Delivery, Failed, Notification, Retry
from notify.redaction import Redactor, redacting_logger
from notify.render import fmt_duration, fmt_time, versions_text
from notify.retry import StatusTable, header, parse_retry_after

Severity = Literal["critical", "error", "warning", "info"]
DEFAULT_SEVERITY: dict[int, Severity] = {1: "critical", 2: "warning", 3: "info"}
MAX_SUMMARY = 1024  # payload.summary limit
MAX_DEDUP_KEY = 255
MAX_LINKS = 5
MAX_DETAIL_ALERTS = 50  # keeps custom_details far below the 512 KB event limit
TRUNCATION_MARK = " …[truncated]"

# Events API v2 response codes (overview page above, "Response codes & retry logic"): 202
# accepted; 400 invalid event (fix the event, do not retry); 429 too many requests (retry
# later; the limit is per routing key, about 120 events per minute); 5xx retry with backoff.
STATUS = StatusTable(
    vendor="PagerDuty", docs="https://developer.pagerduty.com/docs/events-api-v2/overview")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _EventsClient(EventsApiV2Client):
    """The pagerduty client, also accepting plain http on a loopback address (a sidecar
    gateway, tests). The routing key travels in the body, so anything else must be https."""

    @property
    def url(self) -> str:
        return str(self._url)

    @url.setter
    def url(self, new_base_url: str) -> None:
        parts = urlsplit(new_base_url)
        if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
            self._url = new_base_url.rstrip("/")
            return
        raise UrlError("PagerDuty url must use https:// (http only on a loopback address)")


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to `limit` characters with a visible marker; True if it was cut."""
    if len(text) <= limit:
        return text, False
    return text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK, True


class PagerDutyNotifier:
    """Sends notifications to one PagerDuty service (one routing key).

    The client's own retry loops are switched off: the outbox worker owns retries, so a
    429 or an outage never blocks inside a send.
    """

    def __init__(self, name: str, routing_key: SecretStr, *, url: str | None = None,
                 source: str = "spanwatch",
                 severity_by_tier: Mapping[int, Severity] | None = None,
                 timeout_s: float = 10.0, ca_file: Path | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.name = name
        self.source = source
        self.severity_by_tier = dict(severity_by_tier or DEFAULT_SEVERITY)
        self._redact = Redactor([routing_key])
        self._clock = clock or (lambda: datetime.now(UTC))
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        try:
            client = _EventsClient(routing_key.get_secret_value(), base_url=url, verify=verify)
        except UrlError as exc:
            raise ValueError(f"receiver {name!r}: url {url!r}: {exc}") from None
        client.timeout = max(1, round(timeout_s))  # whole seconds (the client types it int)
        # Network errors: raise at once instead of sleeping 1.5 s, 3 s, 6 s in the client.
        client.max_network_attempts = 0
        # 429 and 500/502/503/504: a retry count < 0 makes the client return the response at
        # once (0 would mean its default: sleep and retry 429 forever).
        client.retry = dict.fromkeys((429, 500, 502, 503, 504), -2)
        client.log = redacting_logger(f"notify.pagerduty.client.{name}", self._redact)
        if not any(isinstance(f, _DropHandBack) for f in client.log.filters):
            client.log.addFilter(_DropHandBack())
        self._client = client

    def event(self, n: Notification) -> dict[str, Any]:
        """The Events API v2 event for `n`, without the routing key (the client adds it)."""
        if n.kind == "resolve":
            return {"event_action": "resolve", "dedup_key": n.dedup_key}
        summary, is_cut = truncate(n.title, MAX_SUMMARY)
        details = self._details(n)
        if is_cut:
            details["truncated"] = f"summary cut to {MAX_SUMMARY} characters"
        labels = dict(n.alerts[0].labels) if n.alerts else {}
        payload: dict[str, Any] = {
            "summary": summary,
            "source": labels.get("service", self.source),
            "severity": self.severity_by_tier.get(n.tier, "error"),
            "component": n.metric or n.rule,
            "group": f"tier {n.tier}",
            "class": n.rule,
            "custom_details": details,
        }
        if n.alerts:
            payload["timestamp"] = n.alerts[0].started_at.astimezone(UTC).isoformat()
        links = [{"href": t.url, "text": f"trace {t.trace_id}"}
                 for line in n.alerts for t in line.traces if t.url][:MAX_LINKS]
        event: dict[str, Any] = {"event_action": "trigger", "dedup_key": n.dedup_key,
                                 "payload": payload, "client": "spanwatch"}
        if links:
            event["links"] = links
        return event

    def _details(self, n: Notification) -> dict[str, Any]:
        details: dict[str, Any] = {"rule": n.rule, "tier": n.tier, "kind": n.kind,
                                   "summary": n.summary}
        if n.is_test:
            details["test"] = "sent by spanwatch test-receiver; not a real incident"
        alerts = [{
            "labels": dict(line.labels), "value": line.value_text,
            "compared_with": line.compared_text, "window": fmt_duration(line.window_s),
            "started_at": fmt_time(line.started_at),
            "versions": versions_text(line) or None,
            "changed_near_onset": list(line.changed),
            "exemplar_traces": [t.url or t.trace_id for t in line.traces],
            "detail": line.detail or None,
        } for line in n.alerts[:MAX_DETAIL_ALERTS]]
        if len(alerts) == 1:
            details.update(alerts[0])
        elif alerts:
            details["alerts"] = alerts
        if len(n.alerts) > MAX_DETAIL_ALERTS:
            details["truncated"] = (f"{len(n.alerts) - MAX_DETAIL_ALERTS} more alerts not "
                                    f"listed ({len(n.alerts)} in the group)")
        if n.attribution is not None:
            details["cost_attribution"] = list(n.attribution.lines())
        if n.runbook:
            details["runbook"] = n.runbook
        return {k: v for k, v in details.items() if v is not None}

    def send(self, n: Notification) -> Delivery:
        if n.kind == "digest":
            return Failed("PagerDuty takes no digests; set the digest's deliver_to to a "
                          "slack, console or file receiver")
        if len(n.dedup_key) > MAX_DEDUP_KEY:
            return Failed(f"dedup_key longer than {MAX_DEDUP_KEY} characters")
        event = self.event(n)
        action = event.pop("event_action")
        try:
            key = self._client.send_event(action, **event)
        except PagerDutyHttpError as exc:
            return self._http_error(exc.response, action)
        except PagerDutyError as exc:
            cause = exc.__cause__ or exc
            why = self._redact(f"connection error: {type(cause).__name__}: {cause}")
            return Retry(None, why)
        note = " (summary truncated)" if "truncated" in event.get("payload", {}).get(
            "custom_details", {}) else ""
        return Delivered(f"PagerDuty accepted the {action} event, dedup_key={key}{note}")

    def _http_error(self, response: Any, action: str) -> Delivery:
        """`response` is the client's httpx2.Response (status_code, headers, text)."""
        status = int(response.status_code)
        if 200 <= status <= 299:  # accepted, but the body lacked dedup_key
            return Delivered(f"PagerDuty answered {status} to the {action} event "
                             "(no dedup_key in the answer)")
        return STATUS.outcome(
            status, self._redact(_vendor_error(str(response.text))),
            parse_retry_after(header(response.headers, "Retry-After"), self._clock()))


def _vendor_error(body: str) -> str:
    """PagerDuty's error body {"status", "message", "errors": [...]} as one line."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "(empty body)"
    if not isinstance(data, dict):
        return body.strip()[:500]
    message = str(data.get("message") or data.get("status") or "")
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        message += ": " + "; ".join(str(e) for e in errors)
    return message[:1000] or body.strip()[:500]


class _DropHandBack(logging.Filter):
    """The client logs "exceeded maximum number of attempts" at ERROR when it hands a 429 or
    5xx back to us on purpose (retry < 0): that is our retry policy at work, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Non-transient HTTP error: exceeded maximum number" not in record.getMessage()
