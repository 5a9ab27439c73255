"""Several processes opening the same new outbox / digest store at once (cluster start)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from notify.digest_store import DigestStore
from notify.outbox import Outbox
from notify.sqlite_shared import when_unlocked


def test_a_locked_database_is_tried_again_and_other_errors_are_not() -> None:
    calls: list[int] = []

    def locked_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "opened"

    assert when_unlocked(locked_twice, pause_s=0.001) == "opened"
    assert len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: outbox")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        when_unlocked(broken, pause_s=0.001)
    assert len(calls) == 1

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        when_unlocked(always_locked, timeout_s=0.05, pause_s=0.001)


def _open_both(directory: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    Outbox(Path(directory) / "outbox.sqlite3").close()
    DigestStore(Path(directory) / "digest.sqlite3").close()


def test_processes_starting_together_all_open_the_same_new_files(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(8):
        directory = tmp_path / str(attempt)
        barrier = context.Barrier(4)
        workers = [context.Process(target=_open_both, args=(str(directory), barrier))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [worker.exitcode for worker in workers] == [0, 0, 0, 0], attempt
        with sqlite3.connect(directory / "outbox.sqlite3") as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
