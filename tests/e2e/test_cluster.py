"""`spanwatch run` as a two-process Bytewax cluster (`python -m bytewax.run ... -i/-a`, with
recovery) over the incidents scenario sends exactly what one process sends: the same pages,
resolves and Slack messages (values, baselines, sample counts included)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.broker import KafkaUnderTest, new_topic
from tests.e2e.conftest import PARTITIONS, RUN_TIMEOUT_S, Traffic, Vendors, new_spanwatch
from tests.e2e.harness import END_RULE, RunResult, Spanwatch, result_of
from tests.e2e.test_recovery import _canonical
from tests.e2e.traffic import publish

pytestmark = pytest.mark.kafka
PROCESSES = 2


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _llm_records(path: Path) -> int:
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(json.loads(line).get("kind") == "llm" for line in lines)


def test_two_processes_send_what_one_sends(kafka: KafkaUnderTest, tmp_path: Path,
                                          vendors: Vendors, incidents_traffic: Traffic,
                                          incidents_run: RunResult) -> None:
    topic = new_topic(kafka, partitions=PARTITIONS)
    publish(kafka.bootstrap, topic, incidents_traffic.items, PARTITIONS,
            markers=incidents_traffic.markers)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), str(PROCESSES)],
                   check=True, timeout=60)
    addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(PROCESSES))
    members: list[Spanwatch] = []
    for i in range(PROCESSES):
        command = (sys.executable, "-m", "bytewax.run", "spanwatch.runner:cluster_flow()",
                   "-i", str(i), "-a", addresses, "-r", str(recovery), "-s", "1", "-b", "0")
        members.append(new_spanwatch(
            kafka, tmp_path, vendors, topic, command=command, log_name=f"process-{i}.log",
            extra_env={"SPANWATCH_OUTPUT_FILE": str(tmp_path / f"records-{i}.jsonl")}))
    for member in members:
        member.start()
    try:
        # The routing step (one key) runs in one of the processes: it logs every transition.
        members[0].wait_until(lambda: any(f"alert rule={END_RULE} tier=3 state=firing"
                                          in m.log() for m in members),
                              RUN_TIMEOUT_S, "end of traffic in either process")
        members[0].wait_until(lambda: members[0].outbox_pending() == 0, 30, "outbox drained")
    finally:
        for member in members:
            member.stop()
    cluster = result_of(members[0], vendors.pagerduty, vendors.slack)

    # Trace assembly is keyed by trace: both processes assembled calls, each call once.
    calls = [_llm_records(tmp_path / f"records-{i}.jsonl") for i in range(PROCESSES)]
    assert all(calls), calls
    assert sum(calls) == incidents_traffic.llm_calls
    assert cluster.pagerduty and cluster.slack
    assert Counter(e["dedup_key"] for e in cluster.pages()) == Counter(
        e["dedup_key"] for e in incidents_run.pages())
    assert cluster.delivered() == incidents_run.delivered()
    assert _canonical(cluster.pagerduty) == _canonical(incidents_run.pagerduty)
    assert _canonical(cluster.slack) == _canonical(incidents_run.slack)


def test_two_workers_in_one_process_send_what_one_sends(
        kafka: KafkaUnderTest, tmp_path: Path, vendors: Vendors, incidents_traffic: Traffic,
        incidents_run: RunResult) -> None:
    topic = new_topic(kafka, partitions=PARTITIONS)
    publish(kafka.bootstrap, topic, incidents_traffic.items, PARTITIONS,
            markers=incidents_traffic.markers)
    spanwatch = new_spanwatch(
        kafka, tmp_path, vendors, topic,
        command=(sys.executable, "-m", "spanwatch.cli", "run", "--workers", "2"),
        extra_env={"SPANWATCH_OUTPUT_FILE": str(tmp_path / "records.jsonl")})
    spanwatch.start()
    try:
        spanwatch.wait_for_end(RUN_TIMEOUT_S)
        spanwatch.wait_until(lambda: spanwatch.outbox_pending() == 0, 30, "outbox drained")
    finally:
        spanwatch.stop()
    workers = result_of(spanwatch, vendors.pagerduty, vendors.slack)
    assert "workers=2" in spanwatch.log()
    assert _llm_records(tmp_path / "records.jsonl") == incidents_traffic.llm_calls
    assert workers.pagerduty and workers.slack
    assert workers.delivered() == incidents_run.delivered()
    assert _canonical(workers.pagerduty) == _canonical(incidents_run.pagerduty)
    assert _canonical(workers.slack) == _canonical(incidents_run.slack)
