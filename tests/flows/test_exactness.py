"""No span lost or double counted (issue 3): the real flow over a 4-partition topic whose event
times are skewed by minutes, read by one process and by a two-process Bytewax cluster, with a
consumer that falls behind (a backlog is published first, the rest while the flow works through
it). What the window stage closes per (series, minute) must equal the generator's totals
exactly, each minute closed once; deliberately late spans (their minute already closed) are
counted as `too_late`, in the late-records counter and in a later minute of their series, and
never folded. Each message's last trace has its root in the partition's next message, so source
batches often end between a child and its root: every LLM span must still leave trace assembly
with its root's context (session id).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from confluent_kafka import Producer

from flows.pipeline import FlowOptions, FlowSinks, build_flow, partition_key
from flows.sinks import CallbackSink
from flows.steps import (
    Batch,
    Progress,
    WatermarkPolicy,
    WindowIn,
    WindowLogic,
    WindowState,
    new_watermark,
)
from ingest.assembly import Record
from ingest.config import IngestConfig
from ingest.decode import Decoded, Decoder, SourceMessage
from ingest.span import LLMSpan
from metrics.bucket import Bucket, event_unix_ns
from metrics.partial import preaggregate_by
from metrics.series import SeriesKey
from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute
from rules.evaluate import RuleEvaluator
from rules.families import families
from rules.lifecycle import AlertLifecycle
from tests.broker import KafkaUnderTest
from tests.fakes.skewed_traffic import (
    MINUTE_NS,
    MODELS,
    SERVICES,
    Message,
    SkewedTraffic,
    series,
)
from tests.flows.cluster_flow import (
    BacklogSource,
    exact_rules,
    late_counts,
    minute_row,
    settings_for,
)

pytestmark = pytest.mark.kafka

T0_NS = 1_764_201_600_000_000_000  # 2025-11-27T00:00:00Z
PARTITIONS = 4
SKEW_MINUTES = 3
"""At the same offset, partition p is p * 3 minutes behind partition 0 in event time."""
BACKLOG_ROUNDS = 120
"""Messages per partition published before the flow starts."""
TOTAL_ROUNDS = 300
LATE_MINUTE = 12
"""The deliberately late spans end in this minute (from T0), published once it has closed."""
LATE_SERVICE, LATE_MODEL = SERVICES[0], MODELS[0]
LATE_BATCHES = ((0, 3), (PARTITIONS - 1, 2))
"""(partition, traces) of the late messages: the fastest and the slowest partition."""
END_OFFSETS = tuple(TOTAL_ROUNDS + sum(1 for p, _ in LATE_BATCHES if p == partition) + 1
                    for partition in range(PARTITIONS))
"""Messages each partition gets: its rounds, its late message, the roots still carried over.
The flow's source stops there (the test publishes while the flow reads)."""
ROOT_DIR = Path(__file__).resolve().parents[2]

Row = dict[str, Any]


@dataclass
class Run:
    """One scenario: the topic, the traffic, and what the test observed while it ran."""

    kafka: KafkaUnderTest
    topic: str
    dlq: str
    traffic: SkewedTraffic = field(default_factory=lambda: SkewedTraffic(
        T0_NS, partitions=PARTITIONS, skew_minutes=SKEW_MINUTES, roots_in_next_message=True))
    published_when_late: int = 0
    assembled_when_late: int | None = None
    """Records the flow had assembled when the late spans and the rest were published."""
    messages: Counter[int] = field(default_factory=Counter)
    """Published per partition."""

    def __post_init__(self) -> None:
        self._producer = Producer({"bootstrap.servers": self.kafka.bootstrap, "linger.ms": 5})

    def publish(self, messages: list[Message]) -> None:
        for message in messages:
            self._producer.produce(self.topic, value=message.value, partition=message.partition)
            self.messages[message.partition] += 1
        remaining = self._producer.flush(15)
        assert remaining == 0, f"{remaining} messages not delivered to the broker"

    def behind(self) -> str:
        return (f"{self.assembled_when_late} of {self.published_when_late} published records "
                "assembled when the late minute closed")

    def publish_rounds(self, start: int, end: int) -> None:
        self.publish([m for i in range(start, end) for m in self.traffic.round(i)])

    def publish_late_and_rest(self) -> None:
        """The late spans, then the remaining rounds; the slowest partition's producer last."""
        self.publish([self.traffic.late(p, LATE_MINUTE, calls, LATE_SERVICE, LATE_MODEL)
                      for p, calls in LATE_BATCHES])
        rest = [m for i in range(BACKLOG_ROUNDS, TOTAL_ROUNDS) for m in self.traffic.round(i)]
        rest += self.traffic.finish()  # the roots still carried over, each partition's last
        self.publish([m for m in rest if m.partition != PARTITIONS - 1])
        self.publish([m for m in rest if m.partition == PARTITIONS - 1])

    def follow(self, rows: Callable[[], list[Row]], assembled: Callable[[], int],
               finished: threading.Event, deadline_s: float) -> None:
        """Once the late minute has closed for the late spans' series (while the flow still
        works through the backlog), publish the late spans and the rest of the traffic."""
        deadline = time.monotonic() + deadline_s
        while not finished.is_set() and time.monotonic() < deadline:
            if late_minute_closed(rows()):
                self.published_when_late = self.traffic.published_records
                self.assembled_when_late = assembled()
                self.publish_late_and_rest()
                return
            time.sleep(0.02)  # poll interval; bounded by the deadline


def late_minute_closed(rows: list[Row]) -> bool:
    """Both series the late spans go to (LLM spans, root spans) closed LATE_MINUTE."""
    late_start = T0_NS + LATE_MINUTE * MINUTE_NS
    targets = {series(LATE_SERVICE, LATE_MODEL), series(LATE_SERVICE, "")}
    closed = {series_of(r) for r in rows if r["kind"] == "minute" and r["minute"] >= late_start}
    return targets <= closed


def series_of(row: Row) -> SeriesKey:
    return tuple((str(name), str(value)) for name, value in row["series"])


def unlabelled(records: list[Record]) -> int:
    """LLM spans without their root's context (every root in the traffic has a session)."""
    return sum(1 for r in records
               if isinstance(r, LLMSpan) and r.kind == "llm" and r.context.session_id is None)


def assert_exact(run: Run, rows: list[Row], late: dict[str, int], assembled: int,
                 without_root: int) -> None:
    traffic = run.traffic
    published = traffic.published_records + traffic.late_records
    assert run.assembled_when_late is not None, "the late minute never closed"
    assert tuple(run.messages[p] for p in range(PARTITIONS)) == END_OFFSETS
    assert run.assembled_when_late < run.published_when_late, (
        "the flow had read everything before the late spans were published: it did not fall "
        "behind")
    assert assembled == published, (
        f"{assembled} records left trace assembly, {published} were published")
    assert without_root == 0, (
        f"{without_root} LLM spans left trace assembly without their root's context")

    minutes = [r for r in rows if r["kind"] == "minute"]
    keys = [(series_of(r), int(r["minute"])) for r in minutes]
    twice = [key for key, count in Counter(keys).items() if count > 1]
    assert not twice, f"{len(twice)} (series, minute)s closed more than once: {twice[:3]}"
    got = {key: (r["requests"], r["errors"], r["spans"]) for key, r in zip(keys, minutes,
                                                                            strict=True)
           if (r["requests"], r["errors"], r["spans"]) != (0, 0, 0)}
    expected = {key: totals.as_tuple() for key, totals in traffic.expected.items()}
    wrong = sorted((key[1], key[0], expected.get(key), got.get(key))
                   for key in expected.keys() | got.keys() if expected.get(key) != got.get(key))
    assert not wrong, (f"{len(wrong)} of {len(expected)} (series, minute) totals differ "
                       f"(minute, series, expected, closed): {wrong[:5]}")
    assert sum(t.spans for t in traffic.expected.values()) == traffic.published_records

    # The late spans: counted with their verdict, in a later minute of their own series,
    # never folded (the totals above exclude them and match).
    late_calls = sum(calls for _, calls in LATE_BATCHES)
    too_late_by_series = Counter[SeriesKey]()
    for key, row in zip(keys, minutes, strict=True):
        too_late_by_series[key[0]] += row["too_late"]
    assert +too_late_by_series == {series(LATE_SERVICE, LATE_MODEL): late_calls,
                                   series(LATE_SERVICE, ""): late_calls}
    assert {verdict: n for verdict, n in late.items() if n} == {
        "too_late": traffic.late_records}
    assert sum(r["late_folded"] for r in minutes) == 0


# --- one process -----------------------------------------------------------------------------


def counts_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {verdict: after.get(verdict, 0) - before.get(verdict, 0) for verdict in after}


def test_one_process_counts_every_span_once(kafka: KafkaUnderTest,
                                            make_topic: Callable[..., str]) -> None:
    run = Run(kafka, make_topic(partitions=PARTITIONS), make_topic())
    run.publish_rounds(0, BACKLOG_ROUNDS)
    rows: list[Row] = []
    assembled = [0, 0]  # records, LLM spans without their root's context
    lock = threading.Lock()

    def closed(minutes: list[ClosedMinute]) -> None:
        new = [minute_row(m) for m in minutes]
        with lock:
            rows.extend(new)

    def records(batch: list[Record]) -> None:
        missing = unlabelled(batch)
        with lock:
            assembled[0] += len(batch)
            assembled[1] += missing

    def snapshot() -> list[Row]:
        with lock:
            return list(rows)

    def assembled_now() -> int:
        with lock:
            return assembled[0]

    settings = settings_for(kafka.bootstrap, run.topic, run.dlq, embedded=kafka.is_embedded)
    options = FlowOptions(
        partitions=tuple(partition_key(run.topic, p) for p in range(PARTITIONS)),
        source=BacklogSource(settings, END_OFFSETS), on_closed_minutes=closed)
    sinks = FlowSinks(groups=CallbackSink(lambda _: None), records=CallbackSink(records))
    finished = threading.Event()
    follower = threading.Thread(target=run.follow,
                                args=(snapshot, assembled_now, finished, 30.0), daemon=True)
    before = late_counts()
    started = time.monotonic()
    follower.start()
    try:
        run_main(build_flow(settings, exact_rules(), sinks, options))  # type: ignore[no-untyped-call]
    finally:
        finished.set()
        follower.join(20)
    seconds = time.monotonic() - started
    print(f"one process: {run.traffic.published_records + run.traffic.late_records} spans in "
          f"{seconds:.1f} s; {run.behind()}")

    assert_exact(run, snapshot(), counts_delta(before, late_counts()), assembled_now(),
                 assembled[1])


# --- two processes ---------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def read_rows(paths: list[Path]) -> list[Row]:
    rows: list[Row] = []
    for index, path in enumerate(paths):
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            with suppress(ValueError):  # a line being written right now
                rows.append({**json.loads(line), "process": index})
    return rows


@dataclass
class Cluster:
    processes: list[subprocess.Popen[bytes]]
    outputs: list[Path]
    logs: list[Path]

    def finished(self) -> bool:
        return all(p.poll() is not None for p in self.processes)

    def wait(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        for process in self.processes:
            with suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(5)

    def failure(self) -> str:
        tails = []
        for index, (process, log) in enumerate(zip(self.processes, self.logs, strict=True)):
            lines = [line for line in log.read_text(errors="replace").splitlines()
                     if "rdkafka" not in line]
            tails.append(f"process {index} exited {process.returncode}:\n"
                         + "\n".join(lines[-15:]))
        return "\n".join(tails)


def start_cluster(run: Run, tmp_path: Path, processes: int = 2) -> Cluster:
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(processes))
    outputs = [tmp_path / f"closed-{i}.jsonl" for i in range(processes)]
    logs = [tmp_path / f"process-{i}.log" for i in range(processes)]
    started = []
    for index in range(processes):
        env = {**os.environ, "SWTEST_BOOTSTRAP": run.kafka.bootstrap, "SWTEST_TOPIC": run.topic,
               "SWTEST_DLQ": run.dlq, "SWTEST_END_OFFSETS": ",".join(map(str, END_OFFSETS)),
               "SWTEST_EMBEDDED": "1" if run.kafka.is_embedded else "0",
               "SWTEST_OUT": str(outputs[index]),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT_DIR),
                                                           os.environ.get("PYTHONPATH")]))}
        with logs[index].open("wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "tests.flows.cluster_flow:get_flow()",
                 "-i", str(index), "-a", addresses],
                cwd=ROOT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT))
    return Cluster(started, outputs, logs)


@pytest.fixture
def cluster_cleanup() -> Iterator[list[Cluster]]:
    clusters: list[Cluster] = []
    yield clusters
    for cluster in clusters:
        for process in cluster.processes:
            if process.poll() is None:
                process.kill()
                process.wait(5)


def test_two_processes_count_every_span_once(
        kafka: KafkaUnderTest, make_topic: Callable[..., str], tmp_path: Path,
        cluster_cleanup: list[Cluster]) -> None:
    run = Run(kafka, make_topic(partitions=PARTITIONS), make_topic())
    run.publish_rounds(0, BACKLOG_ROUNDS)
    started = time.monotonic()
    cluster = start_cluster(run, tmp_path)
    cluster_cleanup.append(cluster)
    finished = threading.Event()

    def rows() -> list[Row]:
        if cluster.finished():
            finished.set()
        return read_rows(cluster.outputs)

    def assembled(now: list[Row] | None = None) -> int:
        return sum(r["count"] for r in (now if now is not None else rows())
                   if r["kind"] == "records")

    run.follow(rows, assembled, finished, deadline_s=40)
    cluster.wait(deadline_s=max(5.0, 55 - (time.monotonic() - started)))
    seconds = time.monotonic() - started
    print(f"two processes: {run.traffic.published_records + run.traffic.late_records} spans in "
          f"{seconds:.1f} s (process start included); {run.behind()}")
    assert all(p.returncode == 0 for p in cluster.processes), cluster.failure()

    final = read_rows(cluster.outputs)
    read_by = {r["name"]: r["process"] for r in final if r["kind"] == "partition"}
    assert sorted(read_by) == sorted(partition_key(run.topic, p) for p in range(PARTITIONS))
    assert set(read_by.values()) == {0, 1}, f"one process read every partition: {read_by}"
    assert {r["process"] for r in final if r["kind"] == "records"} == {0, 1}
    late: Counter[str] = Counter()
    for row in final:
        if row["kind"] == "late":
            late.update({k: v for k, v in row.items() if k not in ("kind", "process")})
    assert sum(1 for r in final if r["kind"] == "late") == 2, cluster.failure()
    assert_exact(run, final, dict(late), assembled(final),
                 sum(r["unlabelled"] for r in final if r["kind"] == "records"))


# --- a step that lags its source ---------------------------------------------------------------


def totals(bucket: Bucket) -> tuple[int, int, int]:
    return bucket.requests, bucket.request_errors, bucket.spans


def test_progress_that_waited_in_the_pipeline_does_not_idle_its_partition() -> None:
    """The window step runs two minutes behind the source (a backlog queued in between), more
    than the idle timeout: the partition that is behind in event time must still hold the
    watermark, so its records, queued behind that progress, are on time and all counted."""
    rules = exact_rules()
    policy = WatermarkPolicy(("fast", "slow"), idle_timeout=timedelta(seconds=30),
                             allowed_lateness=timedelta(0))
    state = WindowState(ShardWindows(), new_watermark(policy, timedelta(0)),
                        RuleEvaluator(rules), AlertLifecycle())
    closed: list[ClosedMinute] = []
    logic = WindowLogic(state, lambda: rules, on_closed_minutes=closed.extend)
    traffic = SkewedTraffic(T0_NS, partitions=2, skew_minutes=10)
    decoder = Decoder(IngestConfig())
    read_wall = time.time_ns() - 120 * 1_000_000_000
    fed: list[LLMSpan] = []
    (family,) = families(rules)

    def batch(message: Message, name: str, read_at: int) -> WindowIn:
        """The message's partials, then its progress (as forwarded, read at `read_at`)."""
        decoded = decoder.decode(SourceMessage(topic="t", partition=message.partition,
                                               offset=0, key=None, value=message.value))
        assert isinstance(decoded, Decoded)
        fed.extend(decoded.spans)
        newest = max(event_unix_ns(span) for span in decoded.spans)
        return Batch("w0", preaggregate_by(decoded.spans, [family.key_of]),
                     (Progress(name, newest, read_at),))

    before = late_counts()
    fast, slow = traffic.round(0)  # the fast partition is 10 minutes ahead in event time
    logic.on_batch([batch(fast, "fast", read_wall), batch(slow, "slow", read_wall)])
    for index in range(1, 6):  # the slow partition goes on; the fast one has nothing new
        logic.on_batch([batch(traffic.round(index)[1], "slow", read_wall + index * 1_000_000)])
    logic.on_eof()

    assert {v: n for v, n in counts_delta(before, late_counts()).items() if n} == {}
    got = {(m.key, m.minute_start_unix_ns): totals(m.bucket) for m in closed if not m.is_empty}
    everything = preaggregate_by(fed, [family.key_of])  # all at once: the reference
    assert got == {(p.key, p.minute_start_unix_ns): totals(Bucket.from_state(p.state))
                   for p in everything}
