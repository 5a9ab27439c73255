"""A process killed with SIGKILL between enqueue and delivery: after a restart every
notification goes out exactly once, and those delivered before the crash are not repeated."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from notify.outbox import Outbox
from notify.pagerduty import PagerDutyNotifier
from notify.worker import DeliveryWorker, TokenBucket
from tests.fakes.pagerduty_server import FakePagerDuty
from tests.notify.conftest import ROUTING_KEY
from tests.notify.crash_child import FIRST, SECOND, batch

REPO = Path(__file__).resolve().parents[2]


def run_child_until(outbox: Path, url: str, mode: str, expected: list[str]) -> None:
    """Start the child, read the lines it prints (with a deadline), then SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.notify.crash_child", str(outbox), url, mode],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for line in expected:
            ready, _, _ = select.select([child.stdout], [], [], 60)
            assert ready, f"child printed nothing within 60 s (waiting for {line!r})"
            assert child.stdout.readline().strip() == line
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def sent(fake: FakePagerDuty) -> list[tuple[str, str]]:
    """(dedup_key, notification kind) of every accepted event, in arrival order."""
    return [(e["dedup_key"], e["payload"]["custom_details"]["kind"])
            for e in fake.events(accepted_only=True)]


def restart_and_drain(path: Path, url: str) -> Outbox:
    outbox = Outbox(path)
    worker = DeliveryWorker(PagerDutyNotifier("pd", SecretStr(ROUTING_KEY), url=url), outbox,
                            budget=TokenBucket(100, 100))
    assert worker.drain(timeout_s=30) == 0
    return outbox


@pytest.mark.timeout(120)
def test_killed_after_enqueue_delivers_once_after_restart(
        tmp_path: Path, pagerduty: FakePagerDuty) -> None:
    path = tmp_path / "outbox.sqlite3"
    run_child_until(path, pagerduty.url, "enqueue-only", ["enqueued"])
    assert pagerduty.requests == []
    outbox = restart_and_drain(path, pagerduty.url)
    expected = [(n.dedup_key, n.kind) for n in batch(SECOND)]
    assert sent(pagerduty) == expected
    assert {r.status for r in outbox.rows()} == {"delivered"}


@pytest.mark.timeout(120)
def test_delivered_before_the_crash_are_not_repeated(
        tmp_path: Path, pagerduty: FakePagerDuty) -> None:
    path = tmp_path / "outbox.sqlite3"
    run_child_until(path, pagerduty.url, "deliver-first", ["delivered", "enqueued"])
    first = [(n.dedup_key, n.kind) for n in batch(FIRST)]
    assert sent(pagerduty) == first
    outbox = restart_and_drain(path, pagerduty.url)
    # The lifecycle replays its events after recovery: nothing is enqueued or sent again.
    assert not any(outbox.enqueue(n, outbox.rows()[0].enqueued_at)
                   for n in batch(FIRST) + batch(SECOND))
    assert sent(pagerduty) == first + [(n.dedup_key, n.kind) for n in batch(SECOND)]
