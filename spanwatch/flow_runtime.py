"""Assembling a runnable flow for `run`, `demo` and `backtest`: rules, silences, sinks and the
source partitions the watermark waits for."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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
from rules.records import AlertEvent
from spanwatch.settings import Settings


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
