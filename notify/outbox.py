"""The durable outbox (SQLite, WAL): every notification is written here before it is sent.

In: `Notification`s from the lifecycle (enqueue returns at once). Out: due rows for each
receiver's delivery worker, in order per alert; rows end delivered or failed. Enqueue is
idempotent on (receiver, dedup_key, kind, sequence), so a replayed event adds nothing, and a
restart resends only rows that were never marked delivered. Slack channel and ts of an
alert's first message are kept here to thread its later messages.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

from notify.records import (
    MessageRef,
    Notification,
    NotificationKind,
    notification_from_json,
    notification_to_json,
)
from notify.sqlite_shared import connect_shared, when_unlocked

RowStatus = Literal["pending", "delivered", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver               TEXT    NOT NULL,
    dedup_key              TEXT    NOT NULL,
    kind                   TEXT    NOT NULL,
    sequence               INTEGER NOT NULL,  -- event time (Unix ns): order per alert
    status                 TEXT    NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts               INTEGER NOT NULL DEFAULT 0,
    enqueued_at_unix_s     REAL    NOT NULL,
    next_attempt_at_unix_s REAL    NOT NULL,
    finished_at_unix_s     REAL,
    last_error             TEXT,              -- the vendor's error, redacted; never secrets
    answer                 TEXT,              -- what the vendor answered on delivery
    notification           TEXT    NOT NULL,  -- rendered, content-free Notification as JSON
    UNIQUE (receiver, dedup_key, kind, sequence)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (receiver, status, next_attempt_at_unix_s);
CREATE INDEX IF NOT EXISTS outbox_alert ON outbox (receiver, dedup_key, status, sequence, id);
CREATE TABLE IF NOT EXISTS threads (
    receiver          TEXT NOT NULL,
    dedup_key         TEXT NOT NULL,
    channel           TEXT NOT NULL,
    ts                TEXT NOT NULL,
    updated_at_unix_s REAL NOT NULL,    -- last delivery in the thread
    root_id           INTEGER,          -- the outbox row that posted the root message
    PRIMARY KEY (receiver, dedup_key)
);
"""
_MIGRATIONS = (("threads", "root_id", "ALTER TABLE threads ADD COLUMN root_id INTEGER"),)
"""Columns added after the first release: added to an older outbox file when opened."""

# Head-of-line rows: the oldest pending row of each alert (dedup_key) at this receiver. Later
# rows of the same alert wait until it is delivered or failed, so each alert's notifications
# go out in order even across retries and restarts.
_HEADS = """
FROM outbox o
WHERE o.receiver = :receiver AND o.status = 'pending'
  AND NOT EXISTS (
    SELECT 1 FROM outbox p
    WHERE p.receiver = o.receiver AND p.dedup_key = o.dedup_key AND p.status = 'pending'
      AND (p.sequence < o.sequence OR (p.sequence = o.sequence AND p.id < o.id)))
"""
_COLUMNS = ("id, receiver, dedup_key, kind, sequence, status, attempts, enqueued_at_unix_s, "
            "next_attempt_at_unix_s, last_error, answer, notification")


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: the outbox takes UTC-aware instants")
    return at.timestamp()


def _at(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    receiver: str
    dedup_key: str
    kind: NotificationKind
    sequence: int
    status: RowStatus
    attempts: int
    enqueued_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    answer: str | None
    notification: Notification


class Outbox:
    """SQLite outbox shared by the enqueuing thread and the delivery workers of one process
    (one connection behind a lock; statements are short and no lock is held while sending).
    Other processes may open the same file: claims are atomic, so a row is sent by one."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect_shared(path)
        # FULL: a delivered mark or an enqueue survives power loss too, not only a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        when_unlocked(self._create)

    def _create(self) -> None:
        """Tables and migrations (idempotent: another process may be doing the same)."""
        self._db.executescript(SCHEMA)
        for table, column, statement in _MIGRATIONS:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def enqueue(self, n: Notification, now: datetime) -> bool:
        """Write `n` durably as pending, due now. False when it was already there."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox (receiver, dedup_key, kind, sequence, "
                "enqueued_at_unix_s, next_attempt_at_unix_s, notification) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (n.receiver, n.dedup_key, n.kind, n.sequence, _ts(now), _ts(now),
                 notification_to_json(n)))
            return cursor.rowcount == 1

    def due(self, receiver: str, now: datetime, limit: int = 1) -> list[OutboxRow]:
        """Head-of-line rows of `receiver` due at `now`, earliest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} {_HEADS} "
                "AND o.next_attempt_at_unix_s <= :now "
                "ORDER BY o.next_attempt_at_unix_s, o.sequence, o.id LIMIT :limit",
                {"receiver": receiver, "now": _ts(now), "limit": limit}).fetchall()
        return [self._row(r) for r in rows]

    def next_due_at(self, receiver: str) -> datetime | None:
        """When the next head-of-line row of `receiver` becomes due (None: nothing pending)."""
        with self._lock:
            (value,) = self._db.execute(
                f"SELECT MIN(o.next_attempt_at_unix_s) {_HEADS}",
                {"receiver": receiver}).fetchone()
        return None if value is None else _at(value)

    def claim(self, row_id: int, now: datetime, lease: timedelta) -> bool:
        """Take a due row for one attempt. Until the attempt is recorded the row looks due
        again only after `lease`, so a process killed mid-send resends it later, and two
        processes never send it at once."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at_unix_s = ? "
                "WHERE id = ? AND status = 'pending' AND next_attempt_at_unix_s <= ?",
                (_ts(now + lease), row_id, _ts(now)))
            return cursor.rowcount == 1

    def mark_delivered(self, row_id: int, now: datetime, answer: str,
                       message: MessageRef | None = None) -> None:
        """Delivered; with `message`, remember it as the alert's thread (Slack)."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET status = 'delivered', finished_at_unix_s = ?, "
                       "answer = ? WHERE id = ?", (_ts(now), answer, row_id))
            if message is not None:
                db.execute(
                    "INSERT INTO threads (receiver, dedup_key, channel, ts, updated_at_unix_s, "
                    "root_id) SELECT receiver, dedup_key, ?, ?, ?, id FROM outbox WHERE id = ? "
                    "ON CONFLICT (receiver, dedup_key) DO UPDATE SET channel = excluded.channel, "
                    "ts = excluded.ts, updated_at_unix_s = excluded.updated_at_unix_s, "
                    "root_id = excluded.root_id",
                    (message.channel, message.ts, _ts(now), row_id))
            else:  # activity keeps a thread from being purged
                db.execute(
                    "UPDATE threads SET updated_at_unix_s = ? WHERE (receiver, dedup_key) = "
                    "(SELECT receiver, dedup_key FROM outbox WHERE id = ?)", (_ts(now), row_id))

    def mark_failed(self, row_id: int, now: datetime, why: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET status = 'failed', finished_at_unix_s = ?, "
                       "last_error = ? WHERE id = ?", (_ts(now), why, row_id))

    def reschedule(self, row_id: int, at: datetime, why: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET next_attempt_at_unix_s = ?, last_error = ? "
                       "WHERE id = ? AND status = 'pending'", (_ts(at), why, row_id))

    def thread(self, receiver: str, dedup_key: str) -> MessageRef | None:
        with self._lock:
            found = self._db.execute(
                "SELECT channel, ts FROM threads WHERE receiver = ? AND dedup_key = ?",
                (receiver, dedup_key)).fetchone()
        return None if found is None else MessageRef(found[0], found[1])

    def thread_root(self, receiver: str, dedup_key: str) -> Notification | None:
        """The notification that posted the alert's thread root, if the outbox still has it."""
        with self._lock:
            found = self._db.execute(
                "SELECT o.notification FROM threads t JOIN outbox o ON o.id = t.root_id "
                "WHERE t.receiver = ? AND t.dedup_key = ?", (receiver, dedup_key)).fetchone()
        return None if found is None else notification_from_json(found[0])

    def rows(self, receiver: str | None = None) -> list[OutboxRow]:
        """All rows (of one receiver), in insertion order: for inspection and tests."""
        where, args = ("WHERE receiver = ?", (receiver,)) if receiver else ("", ())
        with self._lock:
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox {where} ORDER BY id",  # noqa: S608 - constants
                args).fetchall()
        return [self._row(r) for r in found]

    def pending_count(self, receiver: str | None = None) -> int:
        where = "AND receiver = ?" if receiver else ""
        with self._lock:
            (count,) = self._db.execute(
                f"SELECT COUNT(*) FROM outbox WHERE status = 'pending' {where}",  # noqa: S608
                (receiver,) if receiver else ()).fetchone()
        return int(count)

    def purge(self, before: datetime) -> int:
        """Delete delivered and failed rows finished before `before`, and threads without a
        delivery since then; a live thread keeps its root row (to edit it on resolve). Keep
        rows longer than any replay window: a purged row's notification would be sent again
        if replayed. Returns the number of outbox rows deleted."""
        with self._tx() as db:
            db.execute("DELETE FROM threads WHERE updated_at_unix_s < ? AND NOT EXISTS ("
                       "SELECT 1 FROM outbox o WHERE o.receiver = threads.receiver AND "
                       "o.dedup_key = threads.dedup_key AND o.status = 'pending')",
                       (_ts(before),))
            return db.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND finished_at_unix_s < ? "
                "AND id NOT IN (SELECT root_id FROM threads WHERE root_id IS NOT NULL)",
                (_ts(before),)).rowcount

    @staticmethod
    def _row(r: tuple[object, ...]) -> OutboxRow:
        return OutboxRow(
            id=cast(int, r[0]), receiver=cast(str, r[1]), dedup_key=cast(str, r[2]),
            kind=cast(NotificationKind, r[3]), sequence=cast(int, r[4]),
            status=cast(RowStatus, r[5]), attempts=cast(int, r[6]),
            enqueued_at=_at(cast(float, r[7])), next_attempt_at=_at(cast(float, r[8])),
            last_error=cast("str | None", r[9]), answer=cast("str | None", r[10]),
            notification=notification_from_json(cast(str, r[11])))
