"""The one retry helper every notifier shares: HTTP status -> Delivery, Retry-After, backoff.

2xx means done; 429, 5xx and connection errors retry after `Retry-After` when the vendor gives
it, otherwise after exponential backoff with jitter, within a total deadline; any other 4xx
fails for good, quoting the vendor error. Each notifier has a `StatusTable` for its quirks.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from notify.records import Delivered, Delivery, Failed, Retry

Decision = Literal["done", "retry", "fail"]


@dataclass(frozen=True, slots=True)
class StatusTable:
    """How one vendor's HTTP statuses (and error codes in 200 bodies) are treated.

    `retry_statuses` and `fail_statuses` override the defaults (2xx done, 429 and 5xx retry,
    other 4xx fail); `retry_error_codes` lists error codes of `{"ok": false, "error": ...}`
    style bodies that are transient (Slack). `docs` links the vendor's description.
    """

    vendor: str
    docs: str
    retry_statuses: frozenset[int] = frozenset()
    fail_statuses: frozenset[int] = frozenset()
    retry_error_codes: frozenset[str] = field(default_factory=frozenset)

    def decide(self, status: int) -> Decision:
        if status in self.fail_statuses:
            return "fail"
        if status in self.retry_statuses or status == 429 or 500 <= status <= 599:
            return "retry"
        if 200 <= status <= 299:
            return "done"
        return "fail"

    def outcome(self, status: int, why: str, retry_after: timedelta | None = None,
                detail: str = "") -> Delivery:
        """The Delivery for an HTTP answer; `why` names the vendor error (already redacted)."""
        decision = self.decide(status)
        if decision == "done":
            return Delivered(detail=detail or f"{self.vendor} answered {status}")
        if decision == "retry":
            return Retry(retry_after, f"{self.vendor} answered {status}: {why}")
        return Failed(f"{self.vendor} answered {status}: {why}")

    def error_code_outcome(self, code: str, why: str, retry_after: timedelta | None = None
                           ) -> Delivery:
        """The Delivery for an error code in an HTTP 200 body (Slack `ok: false`)."""
        if code in self.retry_error_codes:
            return Retry(retry_after, f"{self.vendor} error {code}: {why}")
        return Failed(f"{self.vendor} error {code}: {why}")


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """The wait a `Retry-After` header asks for: delay-seconds or an HTTP-date (RFC 9110
    section 10.2.3). None when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return timedelta(seconds=max(0.0, float(text)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - now)


def header(headers: object, name: str) -> str | None:
    """A header value looked up case-insensitively in a mapping or httpx-style headers."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for candidate in (name, name.lower(), name.title()):
        value = get(candidate)
        if value is not None:
            return str(value[0] if isinstance(value, list) and value else value)
    items = getattr(headers, "items", None)
    if items is not None:
        for key, value in items():
            if str(key).lower() == name.lower():
                return str(value[0] if isinstance(value, list) and value else value)
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a transient failure again, and when to give up.

    Without Retry-After the n-th retry waits min(maximum, initial * 2**(n-1)), scaled by a
    jitter factor in [0.5, 1) ("equal jitter"), so receivers recovering from an outage are not
    hit by every worker at once. Retry-After is honoured exactly (never shorter).
    """

    initial: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(minutes=5)
    deadline: timedelta = timedelta(hours=6)
    """Total time from enqueue after which a notification that keeps failing is given up."""

    def delay(self, attempt: int, retry_after: timedelta | None, jitter_ratio: float
              ) -> timedelta:
        """Wait before the next attempt after `attempt` attempts (>= 1) have failed.

        `jitter_ratio` is a random number in [0, 1) (the caller's RNG keeps this pure).
        """
        if retry_after is not None:
            return retry_after
        exponent = min(max(attempt, 1) - 1, 32)
        base = min(self.maximum, self.initial * (1 << exponent))
        return base * (0.5 + 0.5 * min(max(jitter_ratio, 0.0), 1.0))

    def next_attempt_at(self, now: datetime, enqueued_at: datetime, attempt: int,
                        retry_after: timedelta | None, jitter_ratio: float) -> datetime | None:
        """When to try again, or None when that would pass the deadline (give up)."""
        at = now + self.delay(attempt, retry_after, jitter_ratio)
        return at if at <= enqueued_at + self.deadline else None
