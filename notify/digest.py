"""The daily digest: the digest receiver keeps tier-3 notifications, the scheduler sends them.

In: tier-3 `Notification`s (the `DigestNotifier` stores them) and the clock. Out, once a day at
`send_at` in the receiver's time zone: a Markdown file and a `Notification(kind="digest")`
submitted to the outbox for the `deliver_to` receiver (keyed by receiver and date).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from notify.digest_render import render_markdown
from notify.digest_store import DigestStore, default_period_start
from notify.records import Delivered, Delivery, DigestReport, Failed, Notification
from notify.render import dedup_key
from notify.worker import Clock, SystemClock

log = logging.getLogger("notify.digest")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DigestNotifier:
    """The `digest` receiver: delivering a notification means keeping it for the digest."""

    def __init__(self, name: str, store: DigestStore,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.name = name
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    def send(self, n: Notification) -> Delivery:
        if n.kind == "digest":
            return Failed("a digest receiver keeps alerts; it cannot deliver a digest")
        self._store.record_item(n, self._clock())
        return Delivered(f"kept for the next digest of {self.name}")


def _local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`day` at wall time `at` in `tz`, as UTC. A wall time skipped by a DST jump maps to the
    first instant after the gap (cron-like); a repeated one to its first occurrence."""
    wanted = datetime.combine(day, at)
    early = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)  # fold=0
    if early.astimezone(tz).replace(tzinfo=None) == wanted:
        return early
    # In a gap: fold=1 reads the wall time with the offset after the jump, fold=0 with the
    # one before; the gap's end (where local time first reaches `at`) lies between them.
    late = datetime.combine(day, at, tzinfo=tz).replace(fold=1).astimezone(UTC)
    lo, hi = sorted((int(early.timestamp()), int(late.timestamp())))  # whole Unix seconds

    def reached(unix_s: int) -> bool:
        return datetime.fromtimestamp(unix_s, tz=tz).replace(tzinfo=None) >= wanted

    while hi - lo > 1:  # time-zone transitions happen on whole seconds
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reached(mid) else (mid, hi)
    return datetime.fromtimestamp(hi, tz=UTC)


class DigestScheduler:
    """Sends one digest receiver's digest at `send_at` (wall time in `timezone`) every day."""

    def __init__(self, receiver: str, store: DigestStore, *, send_at: time, timezone: ZoneInfo,
                 submit: Callable[[Notification], bool] | None = None,
                 deliver_to: str | None = None, markdown_dir: Path | None = None,
                 grace: timedelta = timedelta(hours=12), clock: Clock | None = None) -> None:
        self.receiver = receiver
        self.store = store
        self.send_at = send_at
        self.timezone = timezone
        self.submit = submit
        self.deliver_to = deliver_to
        self.markdown_dir = markdown_dir
        self.grace = grace
        """A digest missed while spanwatch was down is still sent if this late at most."""
        self.clock: Clock = clock or SystemClock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def next_send_at(now: datetime, send_at: time, tz: ZoneInfo) -> datetime:
        """The first send instant strictly after `now` (UTC), DST-correct."""
        local_day = now.astimezone(tz).date()
        for offset in range(3):
            candidate = _local_instant(local_day + timedelta(days=offset), send_at, tz)
            if candidate > now:
                return candidate
        raise AssertionError("unreachable: a send time exists every day")

    @staticmethod
    def previous_send_at(now: datetime, send_at: time, tz: ZoneInfo) -> datetime:
        """The last send instant at or before `now` (UTC)."""
        local_day = now.astimezone(tz).date()
        for offset in range(3):
            candidate = _local_instant(local_day - timedelta(days=offset), send_at, tz)
            if candidate <= now:
                return candidate
        raise AssertionError("unreachable: a send time exists every day")

    def day_of(self, at: datetime) -> date:
        return at.astimezone(self.timezone).date()

    def report(self, period_end: datetime, *, is_claimed: bool = False) -> DigestReport:
        start = default_period_start(period_end, self.store.last_sent(self.receiver))
        return self.store.report(self.receiver, self.day_of(period_end), str(self.timezone),
                                 start, period_end, is_claimed=is_claimed)

    def send(self, period_end: datetime) -> DigestReport:
        """Build the digest ending at `period_end`, write its Markdown, submit it to
        `deliver_to` through the outbox, and remember it was sent."""
        day = self.day_of(period_end)
        self.store.claim_items(self.receiver, day)
        report = self.report(period_end, is_claimed=True)
        if self.markdown_dir is not None:
            self.markdown_dir.mkdir(parents=True, exist_ok=True)
            path = self.markdown_dir / f"{self.receiver}-{day.isoformat()}.md"
            path.write_text(render_markdown(report), encoding="utf-8")
        if self.submit is not None and self.deliver_to:
            self.submit(digest_notification(report, self.deliver_to))
        self.store.mark_sent(self.receiver, day, period_end)
        log.info("digest sent receiver=%s day=%s items=%d deliver_to=%s", self.receiver, day,
                 len(report.items), self.deliver_to)
        return report

    def tick(self, now: datetime) -> DigestReport | None:
        """Send the digest if its time has come and it was not sent yet."""
        due = self.previous_send_at(now, self.send_at, self.timezone)
        if self.store.is_sent(self.receiver, self.day_of(due)) or now - due > self.grace:
            return None
        return self.send(due)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"digest-{self.receiver}")
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock.now()
            try:
                self.tick(now)
            except Exception:  # a bad digest must not stop the next ones
                log.exception("digest failed receiver=%s", self.receiver)
            wait = self.next_send_at(now, self.send_at, self.timezone) - now
            # Wake at least every minute: the wall clock may jump (suspend, NTP).
            self.clock.wait(self._stop, min(wait.total_seconds(), 60.0))


def digest_notification(report: DigestReport, deliver_to: str) -> Notification:
    """The outbox notification carrying `report` to `deliver_to`, keyed by receiver and day."""
    summary = (f"{report.requests:,} requests, ${report.cost_usd:,.2f}, "
               f"{len(report.items)} tier-3 alerts")
    return Notification(
        receiver=deliver_to, kind="digest",
        dedup_key=dedup_key(deliver_to, f"digest/{report.receiver}/{report.day.isoformat()}"),
        sequence=(report.period_end - _EPOCH) // timedelta(microseconds=1) * 1000,
        rule="digest", tier=3,
        title=f"spanwatch digest {report.day.isoformat()}", summary=summary, digest=report)
