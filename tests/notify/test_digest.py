"""The daily digest: DST-correct schedule, SQLite store, Markdown and Slack renderings."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from notify.digest import DigestNotifier, DigestScheduler
from notify.digest_render import render_markdown
from notify.digest_store import DigestStore, UsageSample
from notify.outbox import Outbox
from notify.records import Delivered, Failed, Notification
from notify.render import build_notification
from notify.slack import SlackNotifier
from notify.worker import DeliveryWorker, TokenBucket
from tests.fakes.slack_server import FakeSlack
from tests.notify.conftest import BOT_TOKEN, FakeClock, make_event

BERLIN = ZoneInfo("Europe/Berlin")
NINE = time(9, 0)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("now", "expected"), [
    # Spring forward on Sunday 2024-03-31: 09:00 is 08:00Z before, 07:00Z from that day on.
    ("2024-03-30T07:59:59", "2024-03-30T08:00:00"),
    ("2024-03-30T08:00:00", "2024-03-31T07:00:00"),
    ("2024-03-31T07:00:00", "2024-04-01T07:00:00"),
    # Fall back on Sunday 2024-10-27: 07:00Z before, 08:00Z from that day on.
    ("2024-10-26T07:30:00", "2024-10-27T08:00:00"),
    ("2024-10-27T08:00:00", "2024-10-28T08:00:00"),
])
def test_nine_oclock_in_berlin_moves_in_utc_across_dst(now: str, expected: str) -> None:
    assert DigestScheduler.next_send_at(utc(now), NINE, BERLIN) == utc(expected)


def test_the_day_across_spring_forward_is_23_hours() -> None:
    sent = DigestScheduler.next_send_at(utc("2024-03-30T09:00:00"), NINE, BERLIN)
    before = DigestScheduler.previous_send_at(sent - timedelta(microseconds=1), NINE, BERLIN)
    assert sent - before == timedelta(hours=23)


def test_a_send_time_skipped_by_spring_forward_runs_when_the_gap_ends() -> None:
    # 02:30 does not exist on 2024-03-31 in Berlin (02:00 -> 03:00): send at 03:00 CEST.
    assert DigestScheduler.next_send_at(utc("2024-03-30T12:00:00"), time(2, 30), BERLIN) == \
        utc("2024-03-31T01:00:00")


def test_a_send_time_repeated_by_fall_back_runs_once() -> None:
    first = DigestScheduler.next_send_at(utc("2024-10-26T12:00:00"), time(2, 30), BERLIN)
    assert first == utc("2024-10-27T00:30:00")  # 02:30 CEST, the first of the two
    assert DigestScheduler.next_send_at(first, time(2, 30), BERLIN) == \
        utc("2024-10-28T01:30:00")  # not 01:30Z on the 27th (02:30 CET)


@pytest.fixture
def store(tmp_path: Path) -> DigestStore:
    return DigestStore(tmp_path / "digest.sqlite3")


def fill(store: DigestStore, start: datetime) -> None:
    for minute, (model, prompt, requests, errors, cost, q_sum, q_n) in enumerate([
            ("gpt-4o", "v12", 100, 2, 3.0, 80.0, 100),
            ("gpt-4o-mini", "v12", 300, 1, 0.6, 240.0, 300),
            ("gpt-4o", "v13", 100, 7, 6.4, 70.0, 100)]):
        store.record_usage(UsageSample(start + timedelta(minutes=minute), model, prompt,
                                       requests, errors, cost, q_sum, q_n))


def test_the_report_sums_usage_and_ranks_the_cost_contributors(store: DigestStore) -> None:
    start = utc("2024-05-06T11:30:00")  # the alerts' events are at 12:00
    fill(store, start)
    fill(store, start)  # a replay replaces, never double counts
    store.record_usage(UsageSample(start - timedelta(minutes=30), "gpt-4o", "v12", 10, 0, 1.0,
                                   9.5, 10))  # the period before: quality 0.95
    for event in (make_event(), make_event(at_s=1), make_event(rule="cost", tier=2)):
        store.record_alert(event)
        store.record_alert(event)
    report = store.report("digest", date(2024, 5, 6), "Europe/Berlin", start,
                          start + timedelta(hours=1), is_claimed=False)
    assert (report.requests, report.errors) == (500, 10)
    assert report.cost_usd == pytest.approx(10.0)
    assert report.error_rate == 0.02
    assert [(c.name, round(c.share_ratio, 2)) for c in report.top_models] == [
        ("gpt-4o", 0.94), ("gpt-4o-mini", 0.06)]
    assert [(c.name, round(c.cost_usd, 2)) for c in report.top_prompt_versions] == [
        ("v13", 6.4), ("v12", 3.6)]
    assert report.quality_mean == pytest.approx(0.78)
    assert report.quality_previous_mean == pytest.approx(0.95)
    assert report.alerts_by_tier == ((1, 2), (2, 1))
    assert [(r.rule, r.tier, r.count) for r in report.alerts_by_rule] == [
        ("error-rate-high", 1, 2), ("cost", 2, 1)]


def test_the_markdown_has_the_summary_trend_counts_and_items(store: DigestStore) -> None:
    start = utc("2024-05-06T11:30:00")
    fill(store, start)
    store.record_alert(make_event(rule="latency-trend", tier=3))
    n = build_notification([make_event(rule="latency-trend", tier=3)], receiver="digest",
                           kind="trigger", runbook="Look at retrieval.",
                           trace_url_template="http://jaeger/trace/{trace_id}")
    DigestNotifier("digest", store).send(n)
    report = store.report("digest", date(2024, 5, 6), "Europe/Berlin", start,
                          start + timedelta(hours=1), is_claimed=False)
    text = render_markdown(report)
    assert text.startswith("# spanwatch digest 2024-05-06 (Europe/Berlin)\n\n500 requests, "
                           "error rate 2.00%, cost $10.00 (2024-05-06 11:30:00Z to "
                           "2024-05-06 12:30:00Z)")
    assert "| gpt-4o | 9.40 | 94% |" in text
    assert "quality: mean score 0.780 (no scores in the period before)" in text
    assert "alerts by tier: tier 3: 1; by rule: latency-trend (tier 3) x1" in text
    assert f"- **{n.title}**" in text
    assert "  runbook: Look at retrieval." in text
    assert "trace [00000000000000000000000000000001](http://jaeger/trace/0000" in text


def test_the_digest_receiver_keeps_alerts_and_refuses_digests(store: DigestStore) -> None:
    notifier = DigestNotifier("digest", store)
    n = build_notification([make_event(tier=3)], receiver="digest", kind="trigger")
    assert notifier.send(n) == Delivered("kept for the next digest of digest")
    assert isinstance(notifier.send(build_notification([make_event()], receiver="digest",
                                                       kind="digest")), Failed)


def test_the_scheduler_sends_once_per_day_and_lists_each_item_once(
        store: DigestStore, tmp_path: Path) -> None:
    submitted: list[Notification] = []

    def submit(n: Notification) -> bool:
        submitted.append(n)
        return True

    scheduler = DigestScheduler("digest", store, send_at=NINE, timezone=BERLIN, submit=submit,
                                deliver_to="slack", markdown_dir=tmp_path / "md")
    DigestNotifier("digest", store).send(
        build_notification([make_event(tier=3)], receiver="digest", kind="trigger"))
    assert scheduler.tick(utc("2024-05-06T06:59:00")) is None  # 08:59 in Berlin
    report = scheduler.tick(utc("2024-05-06T07:00:00"))
    assert report is not None and len(report.items) == 1
    assert report.period_end == utc("2024-05-06T07:00:00")
    assert scheduler.tick(utc("2024-05-06T07:30:00")) is None  # already sent today
    (n,) = submitted
    assert (n.receiver, n.kind, n.dedup_key) == (
        "slack", "digest", "spanwatch/slack/digest/digest/2024-05-06")
    assert (tmp_path / "md" / "digest-2024-05-06.md").read_text().startswith(
        "# spanwatch digest 2024-05-06")
    tomorrow = scheduler.tick(utc("2024-05-07T07:00:00"))
    assert tomorrow is not None
    assert tomorrow.items == ()  # yesterday's item is not listed again
    assert tomorrow.period_start == utc("2024-05-06T07:00:00")


def test_a_digest_missed_for_longer_than_the_grace_is_skipped(store: DigestStore) -> None:
    scheduler = DigestScheduler("digest", store, send_at=NINE, timezone=BERLIN,
                                grace=timedelta(hours=2))
    assert scheduler.tick(utc("2024-05-06T09:30:00")) is None
    assert scheduler.tick(utc("2024-05-06T08:30:00")) is not None


def test_the_digest_goes_to_slack_as_blocks_through_the_outbox(
        store: DigestStore, slack: FakeSlack, tmp_path: Path) -> None:
    clock = FakeClock(utc("2024-05-06T07:00:00"))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    scheduler = DigestScheduler("digest", store, send_at=NINE, timezone=BERLIN,
                                submit=lambda n: outbox.enqueue(n, clock.now()),
                                deliver_to="slack")
    fill(store, utc("2024-05-06T06:00:00"))
    scheduler.tick(clock.now())
    scheduler.tick(clock.now())
    notifier = SlackNotifier("slack", bot_token=SecretStr(BOT_TOKEN), channel="#llm-alerts",
                             url=slack.api_url)
    DeliveryWorker(notifier, outbox, clock=clock, budget=TokenBucket(5, 5)).drain(30)
    (request,) = slack.requests
    blocks = request.json()["blocks"]
    assert blocks[0]["text"]["text"] == ":newspaper: spanwatch digest 2024-05-06"
    assert blocks[1]["text"]["text"].startswith("500 requests, error rate 2.00%, cost $10.00")
    assert "thread_ts" not in request.json()
    assert [r.status for r in outbox.rows()] == ["delivered"]
