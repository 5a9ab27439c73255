"""Tests for the embedded tansu broker and for reading Kafka the way spanwatch does.

The ``kafka``-marked tests run against whatever ``tests.broker`` provides:
the embedded tansu broker by default, or real Kafka from
``$SPANWATCH_TEST_KAFKA``. They check real behaviour end to end:

* plain confluent-kafka: produce to a 2-partition topic, read everything
  back exactly once with ``assign()`` (no consumer group), stopping on
  ``_PARTITION_EOF``;
* Bytewax 0.21 ``KafkaSource(tail=False)`` -> ``TestingSink`` via
  ``run_main``: reads exactly the produced values and *terminates*. On tansu
  this works although its ListOffsets high watermark is wrong, because
  partition EOF comes from the watermark in Fetch responses, which tansu
  reports correctly (see ``spanwatch/embedded_broker.py``).

The other tests exercise :class:`EmbeddedBroker` itself (start, stop, errors).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bytewax import operators as op
from bytewax.connectors.kafka import KafkaError as BytewaxKafkaError
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from spanwatch.embedded_broker import (
    EmbeddedBroker,
    EmbeddedBrokerError,
    client_tuning,
)
from tests.broker import KafkaUnderTest, new_topic

_DEADLINE = 60.0  # seconds; generous, a healthy run takes well under 2 s per test

_run_main: Callable[[Dataflow], None] = run_main  # bytewax.testing is untyped


def _produce(
    kafka: KafkaUnderTest, topic: str, records: list[tuple[int, bytes, bytes]], *, flush_each: bool
) -> dict[tuple[int, int], bytes]:
    """Produce ``(partition, key, value)`` records; return ``{(partition, offset): value}``."""
    delivered: dict[tuple[int, int], bytes] = {}
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered[(msg.partition(), msg.offset())] = msg.value()

    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": "5"})
    for partition, key, value in records:
        producer.produce(topic, key=key, value=value, partition=partition, on_delivery=on_delivery)
        if flush_each:
            producer.flush(_DEADLINE)
    assert producer.flush(_DEADLINE) == 0, "messages still unsent after the deadline"
    assert not errors, errors
    assert len(delivered) == len(records)
    return delivered


def _records(n: int, partitions: int) -> list[tuple[int, bytes, bytes]]:
    return [(i % partitions, f"k{i}".encode(), f"v{i}".encode()) for i in range(n)]


def _run_with_deadline(flow: Dataflow, deadline: float) -> float:
    """``run_main(flow)`` in a daemon thread; fail if it has not returned by *deadline* s."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            _run_main(flow)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            failure.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=target, name="bytewax-run-main", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        pytest.fail(f"run_main did not return within {deadline:.0f}s: tail=False did not stop")
    if failure:
        raise failure[0]
    return time.monotonic() - started


# -- plain confluent-kafka ----------------------------------------------------


@pytest.mark.kafka
def test_assign_reads_every_message_exactly_once(kafka: KafkaUnderTest) -> None:
    topic = new_topic(kafka, partitions=2)
    records = _records(500, partitions=2)
    delivered = _produce(kafka, topic, records, flush_each=False)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": "spanwatch-test-unused",  # assign() never joins it
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            **kafka.consumer_tuning(),
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
        seen: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        duplicates: list[tuple[int, int]] = []
        eof_at: dict[int, int] = {}
        deadline = time.monotonic() + _DEADLINE
        while len(eof_at) < 2:
            assert time.monotonic() < deadline, f"no EOF on all partitions; EOFs: {eof_at}"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            partition, offset, key, value = msg.partition(), msg.offset(), msg.key(), msg.value()
            assert partition is not None and offset is not None
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                eof_at[partition] = offset
                continue
            assert isinstance(key, bytes) and isinstance(value, bytes)
            if (partition, offset) in seen:
                duplicates.append((partition, offset))
            seen[(partition, offset)] = (key, value)
        # Nothing may follow the end of both partitions.
        extra = consumer.poll(0.2)
        assert extra is None or extra.error() is not None, "message after partition EOF"
    finally:
        consumer.close()

    assert not duplicates
    assert eof_at == {0: 250, 1: 250}
    assert {where: value for where, (_, value) in seen.items()} == delivered
    for p in (0, 1):
        # Per partition: offsets 0..249, in production order, keys kept.
        sent = [(k, v) for part, k, v in records if part == p]
        assert [seen[(p, off)] for off in range(250)] == sent


# -- Bytewax KafkaSource ------------------------------------------------------


def _bytewax_read(kafka: KafkaUnderTest, topic: str) -> tuple[list[tuple[int, int, bytes]], float]:
    out: list[tuple[int, int, bytes]] = []
    flow = Dataflow("embedded_broker_read")
    source = KafkaSource(
        brokers=[kafka.bootstrap],
        topics=[topic],
        tail=False,
        add_config=client_tuning(kafka.is_embedded),
    )
    msgs = op.input("in", flow, source)

    def row(
        m: KafkaSourceMessage[bytes | None, bytes | None]
        | BytewaxKafkaError[bytes | None, bytes | None],
    ) -> tuple[int, int, bytes]:
        # raise_on_errors=True (the default): errors stop the flow, never arrive here.
        assert isinstance(m, KafkaSourceMessage)
        assert m.partition is not None and m.offset is not None and m.value is not None
        return (m.partition, m.offset, m.value)

    op.output("out", op.map("row", msgs, row), TestingSink(out))
    elapsed = _run_with_deadline(flow, _DEADLINE)
    return out, elapsed


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("n", "flush_each"),
    [pytest.param(2000, False, id="bulk"), pytest.param(60, True, id="one-message-per-request")],
)
def test_kafka_source_tail_false_reads_all_and_stops(
    kafka: KafkaUnderTest, n: int, flush_each: bool
) -> None:
    topic = new_topic(kafka, partitions=2)
    delivered = _produce(kafka, topic, _records(n, partitions=2), flush_each=flush_each)

    out, _elapsed = _bytewax_read(kafka, topic)

    got = {(p, off): value for p, off, value in out}
    assert len(got) == len(out), "a message was emitted twice"
    assert got == delivered
    assert sorted(got.values()) == sorted(f"v{i}".encode() for i in range(n))


@pytest.mark.kafka
def test_kafka_source_tail_false_stops_on_empty_topic(kafka: KafkaUnderTest) -> None:
    topic = new_topic(kafka, partitions=2)
    out, _elapsed = _bytewax_read(kafka, topic)
    assert out == []


@pytest.mark.kafka
def test_make_topic_creates_distinct_topics(
    kafka: KafkaUnderTest, make_topic: Callable[..., str]
) -> None:
    first, second = make_topic(), make_topic(partitions=3)
    assert first != second
    md = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10)
    assert len(md.topics[first].partitions) == 1
    assert len(md.topics[second].partitions) == 3


# -- EmbeddedBroker itself ------------------------------------------------------


def test_client_tuning() -> None:
    assert client_tuning(True) == {"fetch.wait.max.ms": "10"}
    assert client_tuning(False) == {}
    client_tuning(True)["fetch.wait.max.ms"] = "999"  # callers get their own copy
    assert client_tuning(True) == {"fetch.wait.max.ms": "10"}


def test_embedded_broker_lifecycle() -> None:
    broker = EmbeddedBroker()
    with broker:
        assert broker.is_embedded is True
        assert broker.running
        host, port = broker.bootstrap.split(":")
        assert host == "127.0.0.1"
        assert broker.startup_seconds is not None
        assert broker.startup_seconds < 10
        log_path = broker.log_path
        assert log_path is not None
        assert log_path.is_file()

        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert [f"{b.host}:{b.port}" for b in md.brokers.values()] == [f"127.0.0.1:{port}"]

        broker.create_topics(["alpha", "beta"], partitions=2)
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert {t: len(md.topics[t].partitions) for t in ("alpha", "beta")} == {
            "alpha": 2,
            "beta": 2,
        }
        with pytest.raises(EmbeddedBrokerError, match="alpha"):
            broker.create_topics(["alpha"])

    assert not broker.running
    assert not log_path.parent.exists(), "temporary directory left behind"
    with pytest.raises(EmbeddedBrokerError, match="not running"):
        _ = broker.bootstrap
    broker.stop()  # idempotent


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tansu"
    with pytest.raises(EmbeddedBrokerError, match="missing or not executable"):
        EmbeddedBroker(binary=str(missing)).start()


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-tansu"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_broker_exiting_at_startup_reports_log_tail(tmp_path: Path) -> None:
    fake = _script(tmp_path, 'echo "boom: cannot start" >&2\nexit 3')
    broker = EmbeddedBroker(binary=fake, startup_timeout=10)
    with pytest.raises(EmbeddedBrokerError, match=r"(?s)status 3.*boom: cannot start"):
        broker.start()
    assert not broker.running


def test_broker_never_answering_times_out_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    fake = _script(tmp_path, f'echo $$ > "{pid_file}"\necho "still starting"\nexec sleep 60')
    broker = EmbeddedBroker(binary=fake, startup_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(EmbeddedBrokerError, match=r"(?s)did not answer within.*still starting"):
        broker.start()
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: stop() waited for it


def test_port_taken_is_retried_on_other_ports(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    fake = _script(tmp_path, f'echo "$3" >> "{attempts}"\necho "err=AddrInUse"\nexit 0')
    with pytest.raises(EmbeddedBrokerError, match="AddrInUse"):
        EmbeddedBroker(binary=fake, startup_timeout=10).start()
    urls = attempts.read_text().split()
    assert len(urls) == 3
    assert all(u.startswith("tcp://127.0.0.1:") for u in urls)
