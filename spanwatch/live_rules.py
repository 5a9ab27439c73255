"""Hot reload for `spanwatch run`: the current rules, re-read from alerts.toml at most every
few seconds by whichever flow step asks; an invalid file is logged and the old rules kept."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rules.config import RulesConfig
from rules.load import RulesWatcher


class LiveRules:
    """Thread-safe: several Bytewax workers of one process share it."""

    def __init__(self, path: Path, *, interval: timedelta = timedelta(seconds=5)) -> None:
        self._watcher = RulesWatcher(path, interval=interval)
        self._lock = threading.Lock()

    def __call__(self) -> RulesConfig:
        with self._lock:
            self._watcher.poll(datetime.now(UTC))
            return self._watcher.current
