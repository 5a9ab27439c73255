"""Records of the notify stage: what a receiver is asked to deliver and what it answered.

`Notification` is built from one or more `AlertEvent`s (see `render.build_notification`) and
holds only rendered, content-free fields: rule, labels, values, versions, trace ids, runbook.
Prompt and completion text never reach it (the events carry none). `Delivery` is a notifier's
answer: `Delivered`, `Retry(after, why)` or `Failed(why)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, Protocol

from pydantic import TypeAdapter

from notify.attribution import CostAttribution
from rules.records import AlertState, Labels

NotificationKind = Literal["trigger", "update", "repeat", "resolve", "digest"]
"""trigger: an alert starts firing; update: it still fires with new values; repeat: reminder
after repeat_interval; resolve: it recovered; digest: the daily digest."""


@dataclass(frozen=True, slots=True)
class TraceLink:
    """An exemplar trace of the window, with a link when a trace URL template is configured."""

    trace_id: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class AlertLine:
    """One alert instance of a notification, rendered."""

    fingerprint: str
    state: AlertState
    labels: Labels
    value: float | None
    value_text: str
    """e.g. "error_rate 0.12" or "no data"."""
    compared_text: str
    """e.g. "> threshold 0.05" or "vs baseline 0.031 ± 0.004 (3.9x)"."""
    window_s: float
    started_at: datetime
    at: datetime
    traces: tuple[TraceLink, ...] = ()
    versions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    changed: tuple[str, ...] = ()
    """Which versions changed near the onset."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Where a chat message went (Slack channel id and ts), so replies can thread under it."""

    channel: str
    ts: str


@dataclass(frozen=True, slots=True)
class Contributor:
    """One line of a digest's top-contributors table."""

    name: str
    cost_usd: float
    share_ratio: float


@dataclass(frozen=True, slots=True)
class RuleCount:
    rule: str
    tier: int
    count: int


@dataclass(frozen=True, slots=True)
class DigestItem:
    """A tier-3 alert kept for the digest (rendered when it was delivered to the digest)."""

    rule: str
    kind: NotificationKind
    title: str
    summary: str
    at: datetime
    traces: tuple[TraceLink, ...] = ()
    runbook: str = ""


@dataclass(frozen=True, slots=True)
class DigestReport:
    """The daily digest of one digest receiver, for the period ending at `period_end`."""

    receiver: str
    day: date
    """Local date (in `timezone`) of the send time; the digest's key with the receiver."""
    timezone: str
    period_start: datetime
    period_end: datetime
    requests: int
    errors: int
    cost_usd: float
    top_models: tuple[Contributor, ...]
    top_prompt_versions: tuple[Contributor, ...]
    quality_mean: float | None
    quality_previous_mean: float | None
    """The same-length period before, for the quality trend."""
    alerts_by_tier: tuple[tuple[int, int], ...]
    alerts_by_rule: tuple[RuleCount, ...]
    items: tuple[DigestItem, ...]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True, slots=True)
class Notification:
    """What one receiver must deliver, already rendered and free of content.

    `dedup_key` derives from the alert fingerprint (or group key) and the receiver: it is
    PagerDuty's dedup_key, the Slack thread key, and with `kind` and `sequence` the outbox key.
    `sequence` is the event time (Unix ns) of the newest event: it orders the notifications of
    one alert and makes a replayed event enqueue the same row again (idempotent).
    """

    receiver: str
    kind: NotificationKind
    dedup_key: str
    sequence: int
    rule: str
    tier: int
    title: str
    summary: str
    alerts: tuple[AlertLine, ...] = ()
    metric: str = ""
    runbook: str = ""
    attribution: CostAttribution | None = None
    digest: DigestReport | None = None
    is_test: bool = False
    """A test sent by `spanwatch test-receiver`; every rendering marks it clearly."""
    thread: MessageRef | None = None
    """Filled by the delivery worker from the outbox: the message to reply under (Slack)."""
    thread_root: Notification | None = None
    """For a resolve, filled by the delivery worker: the notification that posted the thread's
    root message (when the outbox still has it), so Slack can edit that message to resolved."""


_NOTIFICATION = TypeAdapter(Notification)


def notification_to_json(n: Notification) -> str:
    """The outbox form of a notification (JSON; nothing secret is in a notification)."""
    return _NOTIFICATION.dump_json(n).decode()


def notification_from_json(text: str) -> Notification:
    return _NOTIFICATION.validate_json(text)


@dataclass(frozen=True, slots=True)
class Delivered:
    """The vendor accepted it. `detail` quotes what the API answered."""

    detail: str = ""
    message: MessageRef | None = None
    """The posted message (Slack bot token), kept by the outbox to thread later replies."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Transient failure (429, 5xx, connection error): try again after `after` when the vendor
    said (Retry-After), else after the worker's backoff."""

    after: timedelta | None
    why: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Permanent failure (other 4xx, vendor error code): `why` quotes the vendor's error."""

    why: str


Delivery = Delivered | Retry | Failed


class Notifier(Protocol):
    """Delivers notifications to one receiver. It never decides whether to notify; it truncates
    to vendor limits (and says so), and never puts secrets in its answer."""

    name: str

    def send(self, n: Notification) -> Delivery: ...
