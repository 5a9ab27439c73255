"""What the daily digest is made of, kept in SQLite until the digest is sent.

In: tier-3 notifications (through the digest receiver), alert triggers of every tier (for the
counts by tier and rule) and per-window usage (requests, errors, cost, quality by model and
prompt version). Out: a `DigestReport` for one period. Every write is idempotent (keyed), so a
replay after a restart counts nothing twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import TypeAdapter

from notify.records import Contributor, DigestItem, DigestReport, Notification, RuleCount
from notify.sqlite_shared import connect_shared, when_unlocked
from rules.records import AlertEvent

TOP_CONTRIBUTORS = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (          -- alert triggers of every tier, for the counts
    fingerprint TEXT    NOT NULL,
    at_unix_ns  INTEGER NOT NULL,
    rule        TEXT    NOT NULL,
    tier        INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, at_unix_ns)
);
CREATE TABLE IF NOT EXISTS items (           -- tier-3 notifications, rendered, content-free
    receiver       TEXT    NOT NULL,
    dedup_key      TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    recorded_at_unix_s REAL NOT NULL,
    digest_day     TEXT,                     -- the digest that listed it (NULL: not yet)
    item           TEXT    NOT NULL,         -- DigestItem as JSON
    PRIMARY KEY (receiver, dedup_key, kind, sequence)
);
CREATE TABLE IF NOT EXISTS usage (           -- one row per window, series and writer
    window_start_unix_s INTEGER NOT NULL,
    model               TEXT    NOT NULL,
    prompt_version      TEXT    NOT NULL,
    requests            INTEGER NOT NULL,
    errors              INTEGER NOT NULL,
    cost_usd            REAL    NOT NULL,
    quality_sum         REAL    NOT NULL,
    quality_count       INTEGER NOT NULL,
    writer              INTEGER NOT NULL DEFAULT 0,  -- cluster process: each sums its own spans
    PRIMARY KEY (window_start_unix_s, model, prompt_version, writer)
);
CREATE TABLE IF NOT EXISTS sent (
    receiver       TEXT NOT NULL,
    day            TEXT NOT NULL,
    period_end_unix_s REAL NOT NULL,
    PRIMARY KEY (receiver, day)
);
"""

_ITEM = TypeAdapter(DigestItem)


@dataclass(frozen=True, slots=True)
class UsageSample:
    """Usage of one series (model, prompt version) in one closed window, as summed by one
    writer. Writing the same window, series and writer again replaces it."""

    window_start: datetime
    model: str
    prompt_version: str
    requests: int
    errors: int
    cost_usd: float
    quality_sum: float = 0.0
    quality_count: int = 0
    writer: int = 0
    """The cluster process that summed it: processes see disjoint spans, so their rows add."""


def _s(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: the digest store takes UTC-aware instants")
    return at.timestamp()


class DigestStore:
    """SQLite store of the digest's inputs (WAL; one connection behind a lock)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect_shared(path)
        when_unlocked(self._create)

    def _create(self) -> None:
        """Tables (idempotent: another process may be doing the same)."""
        if self._db.in_transaction:  # an upgrade script stopped by a lock: start it again
            self._db.execute("ROLLBACK")
        self._upgrade_usage()
        self._db.executescript(SCHEMA)

    def _upgrade_usage(self) -> None:
        """Stores written before usage rows had a writer: move their rows to writer 0."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(usage)")}
        if columns and "writer" not in columns:
            self._db.executescript(
                "BEGIN; ALTER TABLE usage RENAME TO usage_v1;" + SCHEMA +  # noqa: S608 - constants
                "INSERT INTO usage SELECT *, 0 FROM usage_v1; DROP TABLE usage_v1; COMMIT;")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_alert(self, event: AlertEvent) -> None:
        """Count an alert trigger (any tier) for the digest's alerts-by-tier-and-rule table."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?)",
                             (event.fingerprint, event.at_unix_ns, event.rule, event.tier))

    def record_item(self, n: Notification, now: datetime) -> None:
        """Keep a tier-3 notification for the next digest of its receiver."""
        at = n.alerts[0].at if n.alerts else datetime.fromtimestamp(n.sequence / 1e9, tz=UTC)
        traces = tuple(t for line in n.alerts for t in line.traces)[:5]
        item = DigestItem(rule=n.rule, kind=n.kind, title=n.title, summary=n.summary, at=at,
                          traces=traces, runbook=n.runbook)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO items (receiver, dedup_key, kind, sequence, "
                "recorded_at_unix_s, item) VALUES (?, ?, ?, ?, ?, ?)",
                (n.receiver, n.dedup_key, n.kind, n.sequence, _s(now),
                 _ITEM.dump_json(item).decode()))

    def record_usage(self, sample: UsageSample) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (int(_s(sample.window_start)), sample.model, sample.prompt_version,
                 sample.requests, sample.errors, sample.cost_usd, sample.quality_sum,
                 sample.quality_count, sample.writer))

    def last_sent(self, receiver: str) -> datetime | None:
        """End of the period of the last digest sent by `receiver`."""
        with self._lock:
            (value,) = self._db.execute(
                "SELECT MAX(period_end_unix_s) FROM sent WHERE receiver = ?",
                (receiver,)).fetchone()
        return None if value is None else datetime.fromtimestamp(value, tz=UTC)

    def is_sent(self, receiver: str, day: date) -> bool:
        with self._lock:
            found = self._db.execute("SELECT 1 FROM sent WHERE receiver = ? AND day = ?",
                                     (receiver, day.isoformat())).fetchone()
        return found is not None

    def mark_sent(self, receiver: str, day: date, period_end: datetime) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)",
                             (receiver, day.isoformat(), _s(period_end)))

    def claim_items(self, receiver: str, day: date) -> None:
        """Assign every unlisted item of `receiver` to the digest of `day` (each item is listed
        in exactly one digest)."""
        with self._lock:
            self._db.execute("UPDATE items SET digest_day = ? WHERE receiver = ? AND "
                             "digest_day IS NULL", (day.isoformat(), receiver))

    def report(self, receiver: str, day: date, timezone: str, period_start: datetime,
               period_end: datetime, *, is_claimed: bool) -> DigestReport:
        """The digest of `receiver` for [period_start, period_end). With `is_claimed`, the items
        assigned to `day`; otherwise the items not yet in any digest (a preview)."""
        start, end = _s(period_start), _s(period_end)
        previous_start = start - (end - start)
        with self._lock:
            db = self._db
            requests, errors, cost = db.execute(
                "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), "
                "COALESCE(SUM(cost_usd), 0) FROM usage WHERE window_start_unix_s >= ? AND "
                "window_start_unix_s < ?", (start, end)).fetchone()
            by = {column: db.execute(  # column is one of two constants, not input
                f"SELECT {column}, SUM(cost_usd) AS c FROM usage WHERE window_start_unix_s >= ? "  # noqa: S608
                f"AND window_start_unix_s < ? GROUP BY {column} ORDER BY c DESC, {column} "
                "LIMIT ?", (start, end, TOP_CONTRIBUTORS)).fetchall()
                for column in ("model", "prompt_version")}
            quality = [db.execute(
                "SELECT SUM(quality_sum), SUM(quality_count) FROM usage WHERE "
                "window_start_unix_s >= ? AND window_start_unix_s < ?", span).fetchone()
                for span in ((start, end), (previous_start, start))]
            ns = (int(start * 1e9), int(end * 1e9))
            tiers = db.execute("SELECT tier, COUNT(*) FROM alerts WHERE at_unix_ns >= ? AND "
                               "at_unix_ns < ? GROUP BY tier ORDER BY tier", ns).fetchall()
            rules = db.execute(
                "SELECT rule, tier, COUNT(*) AS n FROM alerts WHERE at_unix_ns >= ? AND "
                "at_unix_ns < ? GROUP BY rule, tier ORDER BY n DESC, rule", ns).fetchall()
            where = "digest_day = ?" if is_claimed else "digest_day IS NULL"
            args = (receiver, day.isoformat()) if is_claimed else (receiver,)
            items = db.execute(f"SELECT item FROM items WHERE receiver = ? AND {where} "  # noqa: S608
                               "ORDER BY sequence, dedup_key", args).fetchall()
        means = [q_sum / q_n if q_n else None for q_sum, q_n in quality]

        def top(rows: list[tuple[str, float]]) -> tuple[Contributor, ...]:
            return tuple(Contributor(name or "(unknown)", c, c / cost if cost else 0.0)
                         for name, c in rows)

        return DigestReport(
            receiver=receiver, day=day, timezone=timezone, period_start=period_start,
            period_end=period_end, requests=int(requests), errors=int(errors),
            cost_usd=float(cost), top_models=top(by["model"]),
            top_prompt_versions=top(by["prompt_version"]), quality_mean=means[0],
            quality_previous_mean=means[1],
            alerts_by_tier=tuple((int(t), int(c)) for t, c in tiers),
            alerts_by_rule=tuple(RuleCount(r, int(t), int(c)) for r, t, c in rules),
            items=tuple(_ITEM.validate_json(row[0]) for row in items))


def default_period_start(period_end: datetime, last_sent: datetime | None) -> datetime:
    """A digest covers the time since the last one, or the last 24 hours."""
    if last_sent is not None and last_sent < period_end:
        return last_sent
    return period_end - timedelta(days=1)
