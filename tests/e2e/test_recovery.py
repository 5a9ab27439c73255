"""Crash recovery end to end: `spanwatch run` killed with SIGKILL twice and restarted with the
same recovery directory and outbox sends exactly what an uninterrupted run over the same
traffic sends: no page twice, the pending resolves still go out, and alerts computed after a
restart carry the same values and baselines (no window lost or counted twice).

One exception is inherent: a kill during an HTTP request leaves its outbox row undelivered,
and the next start sends it again (at least once; PagerDuty deduplicates by dedup_key, a Slack
webhook cannot). Such a row has more than one attempt, and only such rows may arrive twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from notify.outbox import OutboxRow
from tests.broker import KafkaUnderTest, new_topic
from tests.e2e.conftest import PARTITIONS, RUN_TIMEOUT_S, Traffic, Vendors, new_spanwatch
from tests.e2e.harness import RunResult, Spanwatch, result_of
from tests.e2e.scenarios import BURST, MINUTES, UNSAFE_AT
from tests.e2e.traffic import publish

pytestmark = pytest.mark.kafka
SPLIT_MINUTE = BURST[0] + 12
"""Traffic before this minute is published first: the burst's page fires within it, its resolve
needs later traffic."""
TAIL_MINUTE = UNSAFE_AT + 10
"""Traffic from this minute on (and the end markers) is published only after the second kill:
the safety page the test waits for fires within the traffic before it, so that kill always
lands before the end of traffic, however fast the flow works through what it was given."""
BURST_PAGE = "spanwatch/pagerduty/provider-error-rate-high{}"
assert BURST[1] < SPLIT_MINUTE < UNSAFE_AT < TAIL_MINUTE < MINUTES


def _minute(key: bytes) -> int:
    return int(key.decode().rsplit("/", 1)[1])


def _delivered(spanwatch: Spanwatch, dedup_key: str, kind: str) -> bool:
    return any(r.dedup_key == dedup_key and r.kind == kind and r.status == "delivered"
               for r in spanwatch.outbox_rows())


def _canonical(items: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(item, sort_keys=True) for item in items)


def _resent(rows: list[OutboxRow], receiver: str) -> list[OutboxRow]:
    """Rows of `receiver` whose delivery a kill interrupted (sent again after a restart)."""
    return [r for r in rows if r.receiver == receiver and r.attempts > 1]


def _same_but_resent(got: list[dict[str, Any]], want: list[dict[str, Any]],
                     is_resent: Callable[[dict[str, Any]], bool]) -> None:
    """`got` has every item of `want` as often, plus only repeats of interrupted sends."""
    assert not _canonical(want) - _canonical(got)
    extra = _canonical(got) - _canonical(want)
    assert all(is_resent(json.loads(item)) for item in extra), extra


def test_kill_9_twice_sends_what_an_uninterrupted_run_sends(
        kafka: KafkaUnderTest, tmp_path: Path, vendors: Vendors, incidents_traffic: Traffic,
        incidents_run: RunResult) -> None:
    topic = new_topic(kafka, partitions=PARTITIONS)
    items = incidents_traffic.items
    publish(kafka.bootstrap, topic, [i for i in items if _minute(i[0]) < SPLIT_MINUTE],
            PARTITIONS)
    spanwatch = new_spanwatch(kafka, tmp_path, vendors, topic)
    spanwatch.start()
    try:
        # 1. Killed at rest with a page out and its resolve still to come.
        spanwatch.wait_until(lambda: _delivered(spanwatch, BURST_PAGE, "trigger")
                             and spanwatch.outbox_pending() == 0,
                             RUN_TIMEOUT_S, "burst page delivered")
        spanwatch.kill()
        assert [e["event_action"] for e in vendors.pagerduty.events()
                if e["dedup_key"] == BURST_PAGE] == ["trigger"]
        publish(kafka.bootstrap, topic,
                [i for i in items if SPLIT_MINUTE <= _minute(i[0]) < TAIL_MINUTE], PARTITIONS)
        spanwatch.start()
        # 2. Killed mid-stream, while it works through the rest (the snapshot it resumes from
        # is up to one snapshot interval old, so some input and output is replayed).
        spanwatch.wait_for_log(r"alert rule=safety-eval-failure tier=1 state=firing",
                               RUN_TIMEOUT_S, after=spanwatch.start_offset())
        spanwatch.kill()
        publish(kafka.bootstrap, topic, [i for i in items if _minute(i[0]) >= TAIL_MINUTE],
                PARTITIONS, markers=incidents_traffic.markers)
        spanwatch.start()
        spanwatch.wait_for_end(RUN_TIMEOUT_S)
    finally:
        spanwatch.stop()
    recovered = result_of(spanwatch, vendors.pagerduty, vendors.slack)

    assert spanwatch.log().count("recovery: resuming from") == 2
    assert recovered.delivered() == incidents_run.delivered()
    resent = {(r.dedup_key, r.kind) for r in _resent(recovered.outbox, "pagerduty")}
    paged_again = {key for key, _ in resent}
    triggers = Counter(e["dedup_key"] for e in recovered.pages())
    assert triggers == Counter({key: 1 + ((key, "trigger") in resent)
                                for key in {e["dedup_key"] for e in incidents_run.pages()}})
    assert vendors.pagerduty.alerts == dict.fromkeys(triggers, "resolved")  # resolves went out
    _same_but_resent(recovered.pagerduty, incidents_run.pagerduty,
                     lambda e: e["dedup_key"] in paged_again)
    # Slack messages carry values, baselines and sample counts of the windows: equal texts mean
    # the restored windows and detectors computed what the uninterrupted ones did.
    titles = [r.notification.title for r in _resent(recovered.outbox, "slack")]
    _same_but_resent(recovered.slack, incidents_run.slack,
                     lambda m: any(m["text"].startswith(t) for t in titles))
    assert recovered.slack_about("cost-per-request-spike")  # fired after both restarts
