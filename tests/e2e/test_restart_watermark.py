"""A restart after downtime must not close minutes whose records are still to be read.

The watermark leaves a source partition out once it made no progress for the idle timeout
(wall time), and extrapolates event time when every partition is idle. Restored from a snapshot,
the partitions' last progress lies before the downtime; counted as idleness, the downtime
would move event time forward and close the minutes whose records wait in Kafka (they would
come in too late, lost from the windows). Here a failing safety evaluation in such a minute
must still page after a restart that took longer than the idle timeout plus the lateness.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.broker import KafkaUnderTest, new_topic
from tests.e2e.conftest import RUN_TIMEOUT_S, Vendors, new_spanwatch
from tests.e2e.traffic import (
    MINUTE_NS,
    SECOND_NS,
    Behaviour,
    Scenario,
    Service,
    clock_messages,
    messages,
    publish,
)

pytestmark = pytest.mark.kafka
SPLIT = 10
"""Phase 1 has minutes [0, SPLIT) of traffic, phase 2 minute SPLIT (with the failure) on."""
AHEAD_S = 50
"""Phase 1 ends with one request this far into minute SPLIT: its event time leads."""
IDLE_S = 2
DOWNTIME_S = 10


def test_restart_after_downtime_closes_no_unread_minute(
        kafka: KafkaUnderTest, tmp_path: Path, vendors: Vendors) -> None:
    now = time.time_ns()
    tutor = Service("tutor-bot", 4, (0, SPLIT + 4), endpoint="/tutor",
                    normal=Behaviour(safety=True), unsafe_at=(SPLIT,))
    scenario = Scenario(now - now % MINUTE_NS - 3 * 60 * MINUTE_NS, SPLIT + 4, (tutor,))
    items = list(messages(scenario))
    ahead = Scenario(scenario.start_ns + SPLIT * MINUTE_NS + AHEAD_S * SECOND_NS, 0, ())
    topic = new_topic(kafka, partitions=1)
    publish(kafka.bootstrap, topic, items[:SPLIT], 1,
            markers=clock_messages(ahead, [0], "ahead-bot"))
    spanwatch = new_spanwatch(kafka, tmp_path, vendors, topic, extra_env={
        # Small idle timeout and no lateness: a downtime of seconds is enough to show it.
        "SPANWATCH_IDLE_PARTITION_TIMEOUT": f"PT{IDLE_S}S",
        "SPANWATCH_ALLOWED_LATENESS": "PT0S",
        "SPANWATCH_INGEST__ASSEMBLY_WAIT_S": "0.001",
        "SPANWATCH_OUTPUT_FILE": str(tmp_path / "records.jsonl"),
        "SPANWATCH_KAFKA__BATCH_SIZE": "1",
    })
    spanwatch.start()
    try:
        records = tmp_path / "records.jsonl"
        spanwatch.wait_until(lambda: records.exists() and "ahead-bot" in records.read_text(),
                             60, "phase 1 read")
        time.sleep(IDLE_S + 1)  # a snapshot after phase 1 (interval 1 s); drift < 1 s
        spanwatch.kill()
        time.sleep(DOWNTIME_S)  # the flow is down: wall time passes, no event time
        # The backlog after the downtime takes several batches: other traffic of minute SPLIT
        # comes first, the failing evaluation later.
        filler = list(messages(replace(scenario, services=(
            Service("filler-bot", 2, (SPLIT, SPLIT + 1)),))))
        markers = clock_messages(scenario, [6, 10])
        publish(kafka.bootstrap, topic, filler * 3 + items[SPLIT:], 1, markers=markers)
        spanwatch.start()
        spanwatch.wait_for_end(RUN_TIMEOUT_S)
    finally:
        spanwatch.stop()
    log = spanwatch.log()
    assert log.count("recovery: resuming from") == 1
    pages = [e for e in vendors.pagerduty.events(accepted_only=True)
             if e["event_action"] == "trigger"]
    assert [e["payload"]["class"] for e in pages] == ["safety-eval-failure"], log[-3000:]
