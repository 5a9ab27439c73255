"""The SQLite outbox: idempotent enqueue, in-order heads per alert, claims, threads, restarts."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from notify.outbox import SCHEMA, Outbox
from notify.records import MessageRef, Notification
from notify.render import build_notification
from tests.notify.conftest import T0, make_event


def note(kind: str = "trigger", at_s: float = 0.0, service: str = "chat",
         receiver: str = "slack") -> Notification:
    state = "resolved" if kind == "resolve" else "firing"
    event = make_event(labels=(("service", service),), at_s=at_s, state=state)  # type: ignore[arg-type]
    return build_notification([event], receiver=receiver, kind=kind)  # type: ignore[arg-type]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3")


def test_the_same_notification_enqueued_twice_is_one_row(outbox: Outbox) -> None:
    assert outbox.enqueue(note(), T0) is True
    assert outbox.enqueue(note(), T0 + timedelta(seconds=5)) is False
    assert len(outbox.rows()) == 1


def test_only_the_oldest_pending_row_of_an_alert_is_due(outbox: Outbox) -> None:
    outbox.enqueue(note("update", at_s=60), T0)
    outbox.enqueue(note("trigger", at_s=0), T0)   # enqueued later, but happened first
    outbox.enqueue(note("trigger", service="search"), T0)
    due = outbox.due("slack", T0, limit=10)
    assert [(r.kind, r.notification.alerts[0].labels) for r in due] == [
        ("trigger", (("service", "chat"),)), ("trigger", (("service", "search"),))]


def test_a_later_row_becomes_due_once_the_earlier_is_done(outbox: Outbox) -> None:
    outbox.enqueue(note("trigger"), T0)
    outbox.enqueue(note("resolve", at_s=60), T0)
    (first,) = outbox.due("slack", T0, limit=10)
    outbox.mark_failed(first.id, T0, "Slack error channel_not_found: x")
    (second,) = outbox.due("slack", T0, limit=10)
    assert second.kind == "resolve"


def test_a_claim_takes_a_row_once_and_lends_it_for_the_lease(outbox: Outbox) -> None:
    outbox.enqueue(note(), T0)
    (row,) = outbox.due("slack", T0)
    assert outbox.claim(row.id, T0, timedelta(seconds=30)) is True
    assert outbox.claim(row.id, T0, timedelta(seconds=30)) is False  # a second worker
    assert outbox.due("slack", T0 + timedelta(seconds=29)) == []
    (again,) = outbox.due("slack", T0 + timedelta(seconds=30))  # the claimer died mid-send
    assert again.attempts == 1


def test_reschedule_keeps_the_vendor_error_and_the_next_attempt(outbox: Outbox) -> None:
    outbox.enqueue(note(), T0)
    (row,) = outbox.due("slack", T0)
    outbox.claim(row.id, T0, timedelta(seconds=30))
    outbox.reschedule(row.id, T0 + timedelta(seconds=7), "Slack answered 429: ratelimited")
    assert outbox.next_due_at("slack") == T0 + timedelta(seconds=7)
    (row,) = outbox.rows()
    assert (row.status, row.attempts, row.last_error) == (
        "pending", 1, "Slack answered 429: ratelimited")


def test_delivery_keeps_the_answer_and_the_thread(outbox: Outbox) -> None:
    n = note()
    outbox.enqueue(n, T0)
    (row,) = outbox.due("slack", T0)
    outbox.mark_delivered(row.id, T0, "Slack answered ok", MessageRef("C1", "1.000100"))
    assert outbox.thread("slack", n.dedup_key) == MessageRef("C1", "1.000100")
    assert outbox.rows()[0].answer == "Slack answered ok"
    assert outbox.next_due_at("slack") is None
    assert outbox.pending_count() == 0


def test_rows_survive_a_reopen_and_delivered_ones_stay_delivered(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    first = Outbox(path)
    first.enqueue(note("trigger"), T0)
    first.enqueue(note("trigger", service="b"), T0)
    row = first.due("slack", T0)[0]
    first.mark_delivered(row.id, T0, "ok")
    first.close()
    second = Outbox(path)
    assert [r.status for r in second.rows()] == ["delivered", "pending"]
    assert second.enqueue(note("trigger"), T0) is False  # a replay after restart: no resend
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_receivers_have_separate_queues(outbox: Outbox) -> None:
    outbox.enqueue(note(receiver="slack"), T0)
    outbox.enqueue(note(receiver="pagerduty"), T0)
    assert [r.receiver for r in outbox.due("pagerduty", T0, limit=5)] == ["pagerduty"]
    assert outbox.pending_count("slack") == 1


def test_purge_drops_only_finished_rows_older_than_the_cutoff(outbox: Outbox) -> None:
    outbox.enqueue(note(), T0)
    outbox.enqueue(note(service="b"), T0)
    outbox.mark_delivered(outbox.due("slack", T0)[0].id, T0, "ok")
    assert outbox.purge(T0 + timedelta(days=8)) == 1
    assert [r.status for r in outbox.rows()] == ["pending"]


def test_naive_datetimes_are_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        outbox.enqueue(note(), T0.replace(tzinfo=None))


def deliver_next(outbox: Outbox, at: datetime, message: MessageRef | None = None) -> int:
    (row,) = outbox.due("slack", at)
    outbox.mark_delivered(row.id, at, "ok", message)
    return row.id


def test_the_thread_root_is_the_row_that_posted_it(outbox: Outbox) -> None:
    trigger, update = note("trigger"), note("update", at_s=60)
    outbox.enqueue(trigger, T0)
    outbox.enqueue(update, T0)
    assert outbox.thread_root("slack", trigger.dedup_key) is None
    deliver_next(outbox, T0, MessageRef("C1", "1.000100"))
    deliver_next(outbox, T0)  # a reply: the root stays the trigger's message
    assert outbox.thread_root("slack", trigger.dedup_key) == trigger
    assert outbox.thread_root("pagerduty", trigger.dedup_key) is None


def test_purge_keeps_a_live_threads_root_and_drops_idle_threads(outbox: Outbox) -> None:
    old, live = note("trigger", service="old"), note("trigger", service="live")
    outbox.enqueue(old, T0)
    outbox.enqueue(live, T0)
    deliver_next(outbox, T0, MessageRef("C1", "1.000100"))
    deliver_next(outbox, T0, MessageRef("C1", "1.000200"))
    later = T0 + timedelta(days=6)
    outbox.enqueue(note("update", at_s=60, service="live"), later)
    deliver_next(outbox, later)  # activity in the live thread
    cutoff = T0 + timedelta(days=3)
    assert outbox.purge(cutoff) == 1  # the old alert's trigger; the live root stays
    trigger, update = outbox.rows()
    assert (trigger.notification, update.kind) == (live, "update")
    assert outbox.thread("slack", old.dedup_key) is None
    assert outbox.thread_root("slack", live.dedup_key) == live
    assert outbox.purge(later + timedelta(days=1)) == 2  # idle now: thread and rows go
    assert outbox.rows() == []


def test_an_outbox_from_before_thread_roots_is_upgraded_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA.replace("    root_id           INTEGER,"
                                        "          -- the outbox row that posted the root "
                                        "message\n", ""))
        assert "root_id" not in {r[1] for r in db.execute("PRAGMA table_info(threads)")}
        db.execute("INSERT INTO threads VALUES ('slack', 'k', 'C1', '1.0', 0)")
    box = Outbox(path)
    assert box.thread("slack", "k") == MessageRef("C1", "1.0")
    assert box.thread_root("slack", "k") is None
    n = note()
    box.enqueue(n, T0)
    deliver_next(box, T0, MessageRef("C1", "2.0"))
    assert box.thread_root("slack", n.dedup_key) == n
    box.close()
