"""Assembling a runnable flow for `run`, `demo` and `backtest`: rules, silences, sinks and the
source partitions the watermark waits for."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

from flows.kafka_io import build_source
from flows.pipeline import FlowOptions, FlowSinks, build_flow
from flows.sinks import CallbackSink
from ingest.assembly import Record
from ingest.decode import SourceMessage
from rules.config import RulesConfig
from rules.grouping import AlertGroup
from rules.records import AlertEvent, Labels
from rules.silences import load_silences, lookup
from spanwatch.settings import Settings

log = logging.getLogger("spanwatch.silences")


@dataclass
class Collected:
    """Thread-safe lists the flow's sinks append to (demo, backtest, tests)."""

    events: list[AlertEvent] = field(default_factory=list)
    groups: list[AlertGroup] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sink(self, name: str) -> CallbackSink[Any]:
        target: list[Any] = getattr(self, name)

        def write(items: list[Any]) -> None:
            with self.lock:
                target.extend(items)

        return CallbackSink(write)


def kafka_partitions(settings: Settings) -> tuple[str, ...]:
    """The `<partition>-<topic>` names Bytewax gives the source partitions."""
    return tuple(build_source(settings.kafka).list_parts())


def recorded_flow(settings: Settings, rules: RulesConfig, messages: list[SourceMessage],
                  sinks: FlowSinks, batch_size: int = 500) -> Dataflow:
    """The live flow over recorded messages, as one source partition, in file order."""
    items = [KafkaSourceMessage(key=m.key, value=m.value, topic=m.topic, partition=0,
                                offset=m.offset) for m in messages]
    source = TestingSource(items, batch_size=batch_size)
    return build_flow(settings, rules, sinks, FlowOptions(
        partitions=(f"0-{messages[0].topic if messages else 'recorded'}",), tail=False,
        source=source))


def discard() -> CallbackSink[Any]:
    return CallbackSink(_ignore)


def _ignore(_: list[Any]) -> None:
    return None


OnClosed = Callable[[int], None]


class SilencesFile:
    """The flow's `is_silenced`: the silences in `path`, re-read when the file changes, so
    `spanwatch silence add` applies to a running flow.

    It lives in the routing step's state, which Bytewax recovery pickles: only the path is
    kept, and a restored flow reads the file afresh (a closure could not be pickled at all).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._lookup: Callable[[str, Labels, datetime], str | None] = _never

    def __call__(self, rule: str, labels: Labels, at: datetime) -> str | None:
        self._refresh()
        return self._lookup(rule, labels, at)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._lookup = None, _never
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            silences = load_silences(self.path)
        except (OSError, ValueError) as exc:  # keep the last good silences, as rules do
            log.warning("silences file %s not applied: %s", self.path, exc)
            return
        self._stamp, self._lookup = stamp, lookup(silences)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


def _never(rule: str, labels: Labels, at: datetime) -> str | None:
    return None
