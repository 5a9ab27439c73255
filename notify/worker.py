"""Delivery: one worker thread per receiver drains the outbox through that receiver's notifier.

In: due outbox rows. Out: rows marked delivered or failed, or rescheduled. Each worker honours
its receiver's rate budget (token bucket) and Retry-After, backs off on transient failures
within the delivery deadline, and pauses only its own receiver: an outage of one vendor never
blocks span processing (enqueue only writes the outbox) or the other receivers.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from notify.instruments import NOTIFICATIONS
from notify.outbox import Outbox, OutboxRow
from notify.records import Delivered, Delivery, Failed, Notification, Notifier, Retry
from notify.retry import RetryPolicy

log = logging.getLogger("notify.worker")


class Clock(Protocol):
    """The only place delivery reads time or waits; tests inject a fake one."""

    def now(self) -> datetime: ...

    def wait(self, wake: threading.Event, timeout_s: float) -> bool:
        """Wait until `wake` is set or `timeout_s` passed; True if woken."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, wake: threading.Event, timeout_s: float) -> bool:
        return wake.wait(max(0.0, timeout_s))


class TokenBucket:
    """A rate budget: `rate_per_s` sustained, bursts of up to `burst` (e.g. Slack allows about
    one message per second per channel, PagerDuty about 120 events per minute per key)."""

    def __init__(self, rate_per_s: float, burst: float = 1.0) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate budget rate_per_s={rate_per_s!r} burst={burst!r}: "
                             "expected rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at: datetime | None = None

    def take(self, now: datetime) -> timedelta:
        """Spend one token: zero if one was available, else how long until one is (nothing
        spent then)."""
        if self._at is not None:
            elapsed = max(0.0, (now - self._at).total_seconds())
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return timedelta(0)
        return timedelta(seconds=(1.0 - self._tokens) / self.rate_per_s)


class DeliveryWorker:
    """Drains one receiver's outbox rows: in order per alert, within its rate budget.

    `run_once(now)` makes at most one attempt and says when to run next; `start()` runs it in
    a daemon thread that reads the clock, and `wake()` cuts a wait short after an enqueue.
    """

    def __init__(self, notifier: Notifier, outbox: Outbox, *, policy: RetryPolicy | None = None,
                 budget: TokenBucket | None = None, clock: Clock | None = None,
                 jitter: Callable[[], float] | None = None,
                 lease: timedelta = timedelta(seconds=60), idle_poll_s: float = 1.0) -> None:
        self.notifier = notifier
        self.receiver = notifier.name
        self.outbox = outbox
        self.policy = policy or RetryPolicy()
        self.budget = budget or TokenBucket(rate_per_s=1.0, burst=1)
        self.clock: Clock = clock or SystemClock()
        self._jitter = jitter or random.SystemRandom().random
        self.lease = lease
        self.idle_poll_s = idle_poll_s
        """Longest idle wait: rows enqueued by another process (the CLI) are found this late."""
        self._paused_until: datetime | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime) -> datetime | None:
        """Attempt the first due row, if any. Returns when to run again (None: nothing
        pending; an instant <= now: at once)."""
        if self._paused_until is not None and now < self._paused_until:
            return self._paused_until
        rows = self.outbox.due(self.receiver, now, limit=1)
        if not rows:
            return self.outbox.next_due_at(self.receiver)
        row = rows[0]
        wait = self.budget.take(now)
        if wait > timedelta(0):
            return now + wait
        if not self.outbox.claim(row.id, now, self.lease):
            return now  # another process took it; look again
        notification = row.notification
        if notification.kind not in ("trigger", "digest"):
            thread = self.outbox.thread(self.receiver, row.dedup_key)
            root = (self.outbox.thread_root(self.receiver, row.dedup_key)
                    if thread is not None and notification.kind == "resolve" else None)
            notification = replace(notification, thread=thread, thread_root=root)
        delivery = self._send(notification, row)
        self._record(row, delivery, self.clock.now())
        return now

    def _send(self, n: Notification, row: OutboxRow) -> Delivery:
        try:
            return self.notifier.send(n)
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not stop delivery
            # Only the type: the message of an unexpected error could quote a secret.
            log.error("notifier raised receiver=%s dedup_key=%s kind=%s attempt=%d error=%s",
                      self.receiver, row.dedup_key, row.kind, row.attempts + 1,
                      type(exc).__name__)
            return Retry(None, f"notifier raised {type(exc).__name__}")

    def _record(self, row: OutboxRow, delivery: Delivery, now: datetime) -> None:
        attempt = row.attempts + 1
        fields = (self.receiver, row.dedup_key, row.kind, row.sequence, attempt)
        if isinstance(delivery, Delivered):
            self.outbox.mark_delivered(row.id, now, delivery.detail, delivery.message)
            NOTIFICATIONS.labels(self.receiver, "sent").inc()
            log.info("delivered receiver=%s dedup_key=%s kind=%s sequence=%d attempt=%d "
                     "answer=%r", *fields, delivery.detail)
        elif isinstance(delivery, Failed):
            self.outbox.mark_failed(row.id, now, delivery.why)
            NOTIFICATIONS.labels(self.receiver, "failed").inc()
            log.error("delivery failed for good receiver=%s dedup_key=%s kind=%s sequence=%d "
                      "attempt=%d why=%r", *fields, delivery.why)
        else:
            at = self.policy.next_attempt_at(now, row.enqueued_at, attempt, delivery.after,
                                             self._jitter())
            if at is None:
                why = (f"{delivery.why}; gave up after {attempt} attempts: the delivery "
                       f"deadline of {self.policy.deadline} since enqueue would pass")
                self.outbox.mark_failed(row.id, now, why)
                NOTIFICATIONS.labels(self.receiver, "failed").inc()
                log.error("delivery failed for good receiver=%s dedup_key=%s kind=%s "
                          "sequence=%d attempt=%d why=%r", *fields, why)
                return
            self.outbox.reschedule(row.id, at, delivery.why)
            NOTIFICATIONS.labels(self.receiver, "retried").inc()
            # The receiver is rate limiting or unwell: pause all of it, not only this row.
            self._paused_until = at
            log.warning("delivery will be retried receiver=%s dedup_key=%s kind=%s "
                        "sequence=%d attempt=%d retry_in_s=%.3f why=%r", *fields,
                        (at - now).total_seconds(), delivery.why)

    def drain(self, timeout_s: float) -> int:
        """Deliver until nothing is pending or `timeout_s` passed (CLI, tests); returns the
        number of rows still pending. Waits through the injected clock."""
        give_up = self.clock.now() + timedelta(seconds=timeout_s)
        while self.outbox.pending_count(self.receiver):
            now = self.clock.now()
            if now >= give_up:
                break
            next_at = self.run_once(now)
            if next_at is None:
                break
            if next_at > now:
                self.clock.wait(self._wake, min((next_at - now).total_seconds(),
                                                (give_up - now).total_seconds()))
        return self.outbox.pending_count(self.receiver)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"notify-{self.receiver}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the attempt in flight (pending rows stay in the outbox)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock.now()
            self._wake.clear()  # before looking, so an enqueue during the look wakes us
            try:
                next_at = self.run_once(now)
            except sqlite3.Error as exc:
                log.error("outbox error receiver=%s error=%s: retrying in 1 s", self.receiver,
                          exc)
                next_at = now + timedelta(seconds=1)
            if next_at is not None and next_at <= now:
                continue
            timeout = self.idle_poll_s if next_at is None else min(
                (next_at - now).total_seconds(), self.idle_poll_s)
            self.clock.wait(self._wake, timeout)


class DeliveryService:
    """The lifecycle's door to notification: `submit` writes the outbox and wakes the worker.

    With a `retention`, a housekeeping thread deletes finished rows older than it, at start and
    every `purge_every` (wall time), so the outbox does not grow without bound.
    """

    def __init__(self, outbox: Outbox, workers: Mapping[str, DeliveryWorker],
                 clock: Clock | None = None, *, retention: timedelta | None = None,
                 purge_every: timedelta = timedelta(hours=1)) -> None:
        self.outbox = outbox
        self.workers = dict(workers)
        self.clock: Clock = clock or SystemClock()
        self.retention = retention
        self.purge_every = purge_every
        self._stop = threading.Event()
        self._purger: threading.Thread | None = None

    def purge_once(self, now: datetime) -> int:
        """Delete the finished rows older than the retention; how many went."""
        if self.retention is None:
            return 0
        deleted = self.outbox.purge(now - self.retention)
        if deleted:
            log.info("outbox purge deleted=%d finished_before=%s", deleted,
                     (now - self.retention).isoformat())
        return deleted

    def _purge_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.purge_once(self.clock.now())
            except sqlite3.Error as exc:
                log.error("outbox purge failed error=%s: trying again later", exc)
            self._stop.wait(self.purge_every.total_seconds())  # wall time, whatever the clock

    def submit(self, n: Notification) -> bool:
        """Enqueue durably and return at once; False if it was already enqueued."""
        is_new = self.outbox.enqueue(n, self.clock.now())
        worker = self.workers.get(n.receiver)
        if worker is None:
            log.error("no delivery worker for receiver=%s dedup_key=%s: kept pending in the "
                      "outbox", n.receiver, n.dedup_key)
        elif is_new:
            worker.wake()
        return is_new

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()
        if self.retention is not None and self._purger is None:
            self._stop.clear()
            self._purger = threading.Thread(target=self._purge_loop, name="notify-purge",
                                            daemon=True)
            self._purger.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._purger is not None:
            self._purger.join(timeout_s)
            self._purger = None
        for worker in self.workers.values():
            worker.stop(timeout_s)
