"""SQLite files that several spanwatch processes open at once (the outbox, the digest store).

A 30 s busy timeout makes statements wait for each other's locks, but not always: when two
connections both hold a shared lock and both want to write (two cluster processes switching a
new file to WAL, or creating its tables, at the same moment), SQLite returns "database is
locked" at once to one of them instead of waiting, to avoid a deadlock. Opening retries that.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0


def when_unlocked(action: Callable[[], T], timeout_s: float = BUSY_TIMEOUT_S,
                  pause_s: float = 0.05) -> T:
    """`action()`, run again while it fails with "database is locked", for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause_s)


def connect_shared(path: Path | str) -> sqlite3.Connection:
    """An autocommit connection usable from several threads (callers hold their own lock), in
    WAL mode so other processes' readers do not block writers."""
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                         timeout=BUSY_TIMEOUT_S)
    when_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL"))
    return db
