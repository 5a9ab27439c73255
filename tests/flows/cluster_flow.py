"""The real spanwatch flow for one process of a Bytewax cluster, for the exactness tests:

    python -m bytewax.run "tests.flows.cluster_flow:get_flow()" -i 0 -a "127.0.0.1:P0;127.0.0.1:P1"

Configured by `SWTEST_*` environment variables (see `ENV`; `SWTEST_END_OFFSETS` lists how many
messages each partition will hold, comma-separated by partition); each process appends what its
window shards close (per series and minute), how many records it assembled and, at exit, its
late-record counters to its own JSON-lines file (`SWTEST_OUT`), flushed line by line so the
test can follow it while the cluster runs. The single-process test shares the helpers.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING

from flows import instruments
from flows.pipeline import FlowOptions, FlowSinks, build_flow, partition_key
from flows.sinks import CallbackSink
from ingest.assembly import Record
from ingest.span import LLMSpan
from metrics.windows import ClosedMinute
from rules.config import RulesConfig
from rules.load import parse_rules
from spanwatch.settings import KafkaSettings, Settings

ENV = ("SWTEST_BOOTSTRAP", "SWTEST_TOPIC", "SWTEST_DLQ", "SWTEST_END_OFFSETS", "SWTEST_EMBEDDED",
       "SWTEST_OUT")

EXACT_RULES = """
[receivers.console]
kind = "console"

[tiers.1]
receivers = ["console"]

[[rules]]
name = "exactness-error-rate"
tier = 1
metric = "error_rate"
group_by = ["service", "model"]
over = "5m"
when = "> 95%"
runbook = "Test rule: gives the window stage one family of series, by service and model."
"""

BACKLOG_BATCH = 10
"""Messages per source batch (`KafkaSettings.batch_size`, default 1000): a lagging consumer
takes the backlog in many batches, each spanning minutes of event time."""
IDLE_POLL = timedelta(milliseconds=20)
GIVE_UP_S = 45.0
"""A partition still short of its end offset this long after it started reading stops anyway
(the test then fails on the missing records instead of hanging)."""


def exact_rules() -> RulesConfig:
    return parse_rules(EXACT_RULES, "exactness.toml")


def settings_for(bootstrap: str, topic: str, dlq: str, *, embedded: bool,
                 batch_size: int = BACKLOG_BATCH) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, spans_topic=topic,
                                        dead_letter_topic=dlq, start_from="beginning",
                                        fetch_wait_max_ms=10 if embedded else None,
                                        batch_size=batch_size))


KafkaItem = KafkaSourceMessage[bytes | None, bytes | None] | KafkaError[bytes | None, bytes | None]


class _UntilOffset(StatefulSourcePartition[KafkaItem, int | None]):
    """A tailing Kafka partition that ends once it has emitted offset `end - 1`."""

    def __init__(self, inner: StatefulSourcePartition[KafkaItem, int | None], end: int) -> None:
        self._inner = inner
        self._end = end
        self._give_up = time.monotonic() + GIVE_UP_S
        self._done = end <= 0
        self._awake: datetime | None = None

    def next_batch(self) -> list[KafkaItem]:
        if self._done or time.monotonic() > self._give_up:
            raise StopIteration
        batch = list(self._inner.next_batch())
        # Caught up: poll again in a while rather than spin (CPU the other process needs).
        self._awake = None if batch else datetime.now(UTC) + IDLE_POLL
        for item in batch:
            message = item.msg if isinstance(item, KafkaError) else item
            if message.offset is not None and message.offset >= self._end - 1:
                self._done = True
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int | None:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class BacklogSource(KafkaSource):
    """The flow's Kafka source reading from the beginning, as a consumer catching up a backlog,
    tailing while the test publishes more; partition p ends after `end_offsets[p]` messages.

    The test knows how many messages it publishes. With `tail=False` a consumer that caught up
    with the producer would stop for good at the end of its partition; how soon depends on how
    CPU time is shared between processes, which made the test flaky. Tells `on_partition` which
    source partitions this process reads.
    """

    def __init__(self, settings: Settings, end_offsets: Sequence[int],
                 on_partition: Callable[[str], None] | None = None) -> None:
        kafka = settings.kafka
        super().__init__(brokers=kafka.bootstrap_servers.split(","), topics=[kafka.spans_topic],
                         tail=True, starting_offset=OFFSET_BEGINNING,
                         add_config=kafka.consumer_config(), batch_size=kafka.batch_size,
                         raise_on_errors=False)
        self._end_offsets = tuple(end_offsets)
        self._on_partition = on_partition

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Any:
        if self._on_partition is not None:
            self._on_partition(for_part)
        index = int(for_part.split("-", 1)[0])
        return _UntilOffset(super().build_part(step_id, for_part, resume_state),
                            self._end_offsets[index])


def minute_row(minute: ClosedMinute) -> dict[str, Any]:
    bucket = minute.bucket
    return {"kind": "minute", "series": [list(pair) for pair in minute.key],
            "minute": minute.minute_start_unix_ns, "requests": bucket.requests,
            "errors": bucket.request_errors, "spans": bucket.spans, "too_late": bucket.too_late,
            "late_folded": bucket.late_folded}


def late_counts() -> dict[str, int]:
    """This process's `spanwatch_late_records_total`, by verdict."""
    counts: dict[str, int] = {}
    for metric in instruments.LATE_RECORDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["verdict"]] = int(sample.value)
    return counts


class JsonLines:
    """Thread-safe appends, one flushed line per row."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(row) + "\n" for row in rows)
        with self._lock:
            if not self._file.closed:
                self._file.write(text)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def get_flow() -> Dataflow:
    """This process's flow, configured from the `SWTEST_*` environment variables."""
    missing = [name for name in ENV if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"cluster_flow needs the environment variables {', '.join(missing)}")
    env = os.environ
    topic = env["SWTEST_TOPIC"]
    settings = settings_for(env["SWTEST_BOOTSTRAP"], topic, env["SWTEST_DLQ"],
                            embedded=env["SWTEST_EMBEDDED"] == "1")
    out = JsonLines(Path(env["SWTEST_OUT"]))

    def at_exit() -> None:
        out.write([{"kind": "late", **late_counts()}])
        out.close()

    atexit.register(at_exit)

    def closed(minutes: list[ClosedMinute]) -> None:
        out.write([minute_row(m) for m in minutes])

    def records(batch: list[Record]) -> None:
        # LLM spans without their root's context: every root in the test traffic has a session.
        missing = sum(1 for r in batch if isinstance(r, LLMSpan) and r.kind == "llm"
                      and r.context.session_id is None)
        out.write([{"kind": "records", "count": len(batch), "unlabelled": missing}])

    end_offsets = [int(n) for n in env["SWTEST_END_OFFSETS"].split(",")]
    partitions = tuple(partition_key(topic, p) for p in range(len(end_offsets)))
    sinks = FlowSinks(groups=CallbackSink(lambda _: None), records=CallbackSink(records))
    source = BacklogSource(settings, end_offsets,
                           lambda part: out.write([{"kind": "partition", "name": part}]))
    options = FlowOptions(partitions=partitions, source=source,
                          on_closed_minutes=closed)
    return build_flow(settings, exact_rules(), sinks, options)
