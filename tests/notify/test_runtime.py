"""NotifyRuntime assembles the stage from config; submit returns at once, workers deliver."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from notify.config import NotifySettings, ReceiverSecrets, parse_receivers
from notify.digest_store import DigestStore
from notify.outbox import Outbox
from notify.runtime import MissingSecretError, NotifyRuntime
from tests.fakes.pagerduty_server import FakePagerDuty
from tests.fakes.slack_server import FakeSlack
from tests.notify.conftest import BOT_TOKEN, ROUTING_KEY, FakeClock, make_event


def wait(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def settings(tmp_path: Path, **secrets: ReceiverSecrets) -> NotifySettings:
    return NotifySettings(outbox_path=tmp_path / "outbox.sqlite3",
                          digest_path=tmp_path / "digest.sqlite3",
                          digest_dir=tmp_path / "digests", secrets=secrets)


@pytest.mark.timeout(60)
def test_events_reach_each_routed_receiver_once(
        tmp_path: Path, pagerduty: FakePagerDuty, slack: FakeSlack) -> None:
    receivers = parse_receivers({
        "pagerduty": {"kind": "pagerduty", "url": pagerduty.url},
        "slack": {"kind": "slack", "channel": "#llm-alerts", "url": slack.api_url},
        # Its send time 12 h away: within the catch-up grace after a send time, the runtime
        # sends that digest at start, which would be a second Slack message here.
        "digest": {"kind": "digest", "deliver_to": "slack", "timezone": "Europe/Berlin",
                   "send_at": (datetime.now(ZoneInfo("Europe/Berlin"))
                               + timedelta(hours=12)).strftime("%H:%M")},
        "console": {"kind": "console", "stream": "stderr"},
    }, "test")
    runtime = NotifyRuntime.build(receivers, settings(
        tmp_path, pagerduty=ReceiverSecrets(routing_key=SecretStr(ROUTING_KEY)),
        slack=ReceiverSecrets(bot_token=SecretStr(BOT_TOKEN))))
    runtime.start()
    try:
        page = make_event()
        sent = runtime.notify_events([page], receivers=["pagerduty", "slack"], kind="trigger",
                                     metric="error_rate", runbook="Roll back.")
        assert [n.receiver for n in sent] == ["pagerduty", "slack"]
        runtime.notify_events([page], receivers=["pagerduty", "slack"], kind="trigger")  # replay
        trend = make_event(rule="latency-trend", tier=3)
        runtime.notify_events([trend], receivers=["digest"], kind="trigger")
        assert wait(lambda: runtime.outbox.pending_count() == 0)
    finally:
        runtime.stop()
    assert len(pagerduty.events()) == 1
    assert len(slack.messages) == 1
    at = make_event().at
    store = DigestStore(tmp_path / "digest.sqlite3")
    report = store.report("digest", date(2024, 5, 6), "Europe/Berlin", at - timedelta(hours=1),
                          at + timedelta(minutes=1), is_claimed=False)
    assert [i.rule for i in report.items] == ["latency-trend"]
    assert report.alerts_by_tier == ((1, 1), (3, 1))  # triggers of every tier are counted


def test_a_missing_secret_names_the_variable_to_set(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPANWATCH_PAGERDUTY_ROUTING_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    receivers = parse_receivers({"pd-main": {"kind": "pagerduty"}}, "test")
    with pytest.raises(MissingSecretError, match="set SPANWATCH_NOTIFY__SECRETS__PD_MAIN__"
                                                 "ROUTING_KEY or SPANWATCH_PAGERDUTY_ROUTING_KEY"):
        NotifyRuntime.build(receivers, settings(tmp_path))


@pytest.mark.timeout(60)
def test_the_running_stage_purges_finished_rows_past_the_retention(tmp_path: Path) -> None:
    """Rows delivered 8 days ago go when the stage starts (and hourly after); a pending row
    of the same age and recent rows stay."""
    receivers = parse_receivers({"console": {"kind": "console", "stream": "stderr"}}, "test")
    config = settings(tmp_path).model_copy(update={"outbox_retention": timedelta(days=7)})
    clock = FakeClock()
    runtime = NotifyRuntime.build(receivers, config, clock=clock)
    assert runtime.service.retention == timedelta(days=7)
    old, stuck = make_event(labels=(("service", "old"),)), make_event(labels=(("service", "x"),))
    runtime.notify_events([old], receivers=["console"], kind="trigger")
    runtime.service.workers["console"].drain(timeout_s=5)
    runtime.outbox.enqueue(replace(runtime.outbox.rows()[0].notification, receiver="gone",
                                   dedup_key="no-worker"), clock.now())  # never delivered
    clock.advance(8 * 86400)
    runtime.notify_events([stuck], receivers=["console"], kind="trigger")
    runtime.service.workers["console"].drain(timeout_s=5)
    before = [(r.receiver, r.status) for r in runtime.outbox.rows()]
    assert before == [("console", "delivered"), ("gone", "pending"), ("console", "delivered")]
    runtime.start()
    try:
        assert wait(lambda: len(runtime.outbox.rows()) == 2)
    finally:
        runtime.stop()
    assert [(r.receiver, r.status) for r in Outbox(config.outbox_path).rows()] == [
        ("gone", "pending"), ("console", "delivered")]


def test_retention_is_at_least_an_hour() -> None:
    with pytest.raises(ValueError, match="outbox_retention"):
        NotifySettings(outbox_retention=timedelta(minutes=5))
