"""Console and file receivers for the demo and first tries."""

from __future__ import annotations

import io
from pathlib import Path

from notify.console import ConsoleNotifier, FileNotifier
from notify.records import Delivered, Retry, notification_from_json
from notify.render import build_notification
from tests.notify.conftest import make_event


def test_the_console_prints_the_readable_alert() -> None:
    out = io.StringIO()
    n = build_notification([make_event()], receiver="console", kind="trigger",
                           metric="error_rate", runbook="Roll back.")
    assert ConsoleNotifier("console", out).send(n) == Delivered("printed to the console")
    text = out.getvalue()
    assert text.startswith("[FIRING] error-rate-high: error_rate 0.12")
    assert "runbook: Roll back." in text


def test_the_file_receiver_appends_one_json_record_per_notification(tmp_path: Path) -> None:
    path = tmp_path / "alerts" / "alerts.jsonl"
    notifier = FileNotifier("file", path)
    first = build_notification([make_event()], receiver="file", kind="trigger")
    second = build_notification([make_event(state="resolved", previous="firing", at_s=60)],
                                receiver="file", kind="resolve")
    assert notifier.send(first) == Delivered(f"appended to {path}")
    notifier.send(second)
    lines = path.read_text().splitlines()
    assert [notification_from_json(line) for line in lines] == [first, second]


def test_the_file_receiver_can_write_text(tmp_path: Path) -> None:
    path = tmp_path / "alerts.txt"
    FileNotifier("file", path, "text").send(
        build_notification([make_event()], receiver="file", kind="trigger"))
    assert path.read_text().startswith("[FIRING] error-rate-high")


def test_an_unwritable_file_is_a_retry(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    delivery = FileNotifier("file", blocker / "alerts.jsonl").send(
        build_notification([make_event()], receiver="file", kind="trigger"))
    assert isinstance(delivery, Retry)
    assert delivery.why.startswith(f"cannot append to {blocker / 'alerts.jsonl'}")
