"""Console and file receivers, for the demo and for trying spanwatch without a vendor account.

A `Notification` in; readable text on a stream, or one JSON (or text) record per
notification appended to a file. Nothing here holds a secret.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Literal, TextIO

from notify.records import Delivered, Delivery, Notification, Retry, notification_to_json
from notify.render import plain_text


class ConsoleNotifier:
    """Prints each notification as readable text (stdout by default)."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, n: Notification) -> Delivery:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(plain_text(n) + "\n")
            stream.flush()
        return Delivered(f"printed to {getattr(stream, 'name', 'the console')}")


class FileNotifier:
    """Appends each notification to a file: one JSON object per line, or readable text."""

    def __init__(self, name: str, path: Path, fmt: Literal["json", "text"] = "json") -> None:
        self.name = name
        self.path = path
        self.fmt = fmt

    def send(self, n: Notification) -> Delivery:
        record = notification_to_json(n) if self.fmt == "json" else plain_text(n) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(record.rstrip("\n") + "\n")
        except OSError as exc:  # full disk, permissions: may clear up, so retry
            return Retry(None, f"cannot append to {self.path}: {exc.strerror or exc}")
        return Delivered(f"appended to {self.path}")
