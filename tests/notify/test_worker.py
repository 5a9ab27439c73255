"""Delivery workers: retry decisions per answer, rate budgets, order per alert, outages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from notify.blocks import resolved_root_message
from notify.outbox import Outbox
from notify.pagerduty import PagerDutyNotifier
from notify.records import (
    Delivered,
    Delivery,
    Failed,
    MessageRef,
    Notification,
    Notifier,
    Retry,
)
from notify.render import build_notification
from notify.retry import RetryPolicy
from notify.slack import SlackNotifier
from notify.worker import DeliveryService, DeliveryWorker, TokenBucket
from tests.fakes.pagerduty_server import THROTTLED, FakePagerDuty, Scripted, server_error
from tests.fakes.slack_server import FakeSlack, rate_limited
from tests.notify.conftest import BOT_TOKEN, ROUTING_KEY, T0, FakeClock, make_event

FAST = RetryPolicy(initial=timedelta(milliseconds=20), maximum=timedelta(milliseconds=200),
                   deadline=timedelta(minutes=1))


class Recording:
    """Wraps a notifier; records when (on the injected clock) each send happened."""

    def __init__(self, inner: Notifier, clock: FakeClock) -> None:
        self.name = inner.name
        self.inner = inner
        self.clock = clock
        self.sent_at: list[datetime] = []
        self.answers: list[Delivery] = []

    def send(self, n: Notification) -> Delivery:
        self.sent_at.append(self.clock.now())
        answer = self.inner.send(n)
        self.answers.append(answer)
        return answer


class ScriptedNotifier:
    """A notifier answering from a script (then Delivered)."""

    def __init__(self, name: str, *answers: Delivery | Exception) -> None:
        self.name = name
        self.answers = list(answers)
        self.sent: list[Notification] = []

    def send(self, n: Notification) -> Delivery:
        self.sent.append(n)
        answer = self.answers.pop(0) if self.answers else Delivered("ok")
        if isinstance(answer, Exception):
            raise answer
        return answer


def notes(receiver: str, *specs: tuple[str, str, float]) -> list[Notification]:
    """(service, kind, at_s) -> notifications of error-rate-high for that service."""
    out = []
    for service, kind, at_s in specs:
        state = "resolved" if kind == "resolve" else "firing"
        previous = "firing" if kind != "trigger" else "pending"
        event = make_event(labels=(("service", service),), state=state,  # type: ignore[arg-type]
                           previous=previous, at_s=at_s)  # type: ignore[arg-type]
        out.append(build_notification([event], receiver=receiver, kind=kind))  # type: ignore[arg-type]
    return out


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=2)
    assert [bucket.take(T0) for _ in range(3)] == [
        timedelta(0), timedelta(0), timedelta(seconds=0.5)]
    assert bucket.take(T0 + timedelta(seconds=0.5)) == timedelta(0)
    with pytest.raises(ValueError, match="rate_per_s=0"):
        TokenBucket(0)


def test_a_429_with_retry_after_is_retried_no_sooner_than_asked(
        slack: FakeSlack, outbox: Outbox, clock: FakeClock) -> None:
    notifier = Recording(SlackNotifier("slack", bot_token=SecretStr(BOT_TOKEN),
                                       channel="#llm-alerts", url=slack.api_url), clock)
    slack.script(rate_limited(7))
    (n,) = notes("slack", ("chat", "trigger", 0))
    outbox.enqueue(n, clock.now())
    worker = DeliveryWorker(notifier, outbox, clock=clock, jitter=lambda: 0.0)
    assert worker.drain(timeout_s=60) == 0
    assert len(notifier.sent_at) == 2
    assert notifier.answers[0] == Retry(timedelta(seconds=7), "Slack answered 429: ratelimited")
    assert notifier.sent_at[1] - notifier.sent_at[0] >= timedelta(seconds=7)
    assert sum(clock.waits) >= 7
    assert [r.status for r in outbox.rows()] == ["delivered"]


def test_5xx_and_429_without_retry_after_back_off_exponentially(
        pagerduty: FakePagerDuty, outbox: Outbox, clock: FakeClock) -> None:
    notifier = Recording(PagerDutyNotifier("pd", SecretStr(ROUTING_KEY), url=pagerduty.url),
                         clock)
    pagerduty.script(server_error(503), server_error(500), THROTTLED)
    (n,) = notes("pd", ("chat", "trigger", 0))
    outbox.enqueue(n, clock.now())
    policy = RetryPolicy(initial=timedelta(seconds=2), maximum=timedelta(minutes=1))
    worker = DeliveryWorker(notifier, outbox, clock=clock, policy=policy, jitter=lambda: 0.0)
    assert worker.drain(timeout_s=600) == 0
    gaps = [(b - a).total_seconds() for a, b in zip(notifier.sent_at, notifier.sent_at[1:],
                                                    strict=False)]
    assert gaps == [1.0, 2.0, 4.0]  # 2 s * 2**(n-1), equal jitter at its lower end
    assert [r.status for r in pagerduty.requests] == [503, 500, 429, 202]
    assert outbox.rows()[0].attempts == 4


def test_a_400_fails_at_once_quoting_pagerduty(outbox: Outbox, clock: FakeClock,
                                               pagerduty: FakePagerDuty) -> None:
    wrong = PagerDutyNotifier("pd", SecretStr("f" * 32), url=pagerduty.url)
    (n,) = notes("pd", ("chat", "trigger", 0))
    outbox.enqueue(n, clock.now())
    DeliveryWorker(wrong, outbox, clock=clock).drain(timeout_s=60)
    (row,) = outbox.rows()
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == "PagerDuty answered 400: Event object is invalid: 'routing_key' is " \
                             "invalid"
    assert len(pagerduty.requests) == 1


def test_retries_stop_at_the_delivery_deadline(outbox: Outbox, clock: FakeClock) -> None:
    notifier = ScriptedNotifier("x", *[Retry(None, "V answered 503: down")] * 100)
    (n,) = notes("x", ("chat", "trigger", 0))
    outbox.enqueue(n, clock.now())
    policy = RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=4),
                         deadline=timedelta(seconds=20))
    DeliveryWorker(notifier, outbox, clock=clock, policy=policy, jitter=lambda: 0.99).drain(120)
    (row,) = outbox.rows()
    assert row.status == "failed"
    assert row.last_error is not None
    assert row.last_error.startswith(f"V answered 503: down; gave up after {row.attempts} "
                                     "attempts: the delivery deadline of 0:00:20")
    assert clock.now() - T0 <= timedelta(seconds=20)


def test_the_rate_budget_spaces_messages(outbox: Outbox, clock: FakeClock) -> None:
    notifier = Recording(ScriptedNotifier("x"), clock)
    for n in notes("x", *[(f"s{i}", "trigger", 0) for i in range(4)]):
        outbox.enqueue(n, clock.now())
    DeliveryWorker(notifier, outbox, clock=clock, budget=TokenBucket(1.0, burst=2)).drain(60)
    assert [(t - T0).total_seconds() for t in notifier.sent_at] == [0, 0, 1, 2]


def test_a_notifier_that_raises_is_retried_not_fatal(outbox: Outbox, clock: FakeClock) -> None:
    notifier = ScriptedNotifier("x", RuntimeError("bug"))
    (n,) = notes("x", ("chat", "trigger", 0))
    outbox.enqueue(n, clock.now())
    DeliveryWorker(notifier, outbox, clock=clock, policy=FAST).drain(60)
    assert len(notifier.sent) == 2
    assert outbox.rows()[0].status == "delivered"


def test_updates_and_resolve_are_replies_in_the_alerts_slack_thread(
        slack: FakeSlack, outbox: Outbox, clock: FakeClock) -> None:
    notifier = SlackNotifier("slack", bot_token=SecretStr(BOT_TOKEN), channel="#llm-alerts",
                             url=slack.api_url)
    for n in notes("slack", ("chat", "trigger", 0), ("chat", "update", 60),
                   ("chat", "resolve", 120)):
        outbox.enqueue(n, clock.now())
    DeliveryWorker(notifier, outbox, clock=clock, budget=TokenBucket(10, 10)).drain(60)
    root, update, resolve = slack.messages
    assert root.thread_ts is None
    assert (update.thread_ts, resolve.thread_ts) == (root.ts, root.ts)
    assert [r.path.removeprefix("/api/") for r in slack.requests] == [
        "chat.postMessage", "chat.postMessage", "chat.update", "chat.postMessage"]
    bodies = [r.json() for r in slack.requests]
    assert [b["channel"] for b in bodies] == ["#llm-alerts", "C0LLMALERTS", "C0LLMALERTS",
                                              "C0LLMALERTS"]
    assert [b.get("thread_ts") for b in bodies] == [None, root.ts, None, root.ts]
    # The root was edited to resolved, keeping what the trigger row (from the outbox) said.
    trigger, _, resolved = (r.notification for r in outbox.rows())
    edit = resolved_root_message(replace(resolved, thread=MessageRef("C0LLMALERTS", root.ts),
                                         thread_root=trigger))
    assert bodies[2] == {"channel": "C0LLMALERTS", "ts": root.ts, "text": edit.text,
                         "blocks": list(edit.blocks)}
    assert root.blocks == list(edit.blocks)
    assert root.blocks[0]["text"]["text"].startswith(":large_green_circle: [RESOLVED]")


@pytest.mark.timeout(60)
def test_a_receiver_down_for_a_while_gets_everything_once_in_order(
        pagerduty: FakePagerDuty, slack: FakeSlack, outbox: Outbox) -> None:
    """Real worker threads and clock; both receivers refuse connections, then come back."""
    pd = PagerDutyNotifier("pd", SecretStr(ROUTING_KEY), url=pagerduty.url)
    sl = SlackNotifier("slack", bot_token=SecretStr(BOT_TOKEN), channel="#llm-alerts",
                       url=slack.api_url)
    workers = {w.receiver: w for w in (
        DeliveryWorker(pd, outbox, policy=FAST, budget=TokenBucket(100, 100)),
        DeliveryWorker(sl, outbox, policy=FAST, budget=TokenBucket(100, 100)))}
    service = DeliveryService(outbox, workers)
    pagerduty.down()
    slack.down()
    service.start()
    try:
        specs = [(s, k, t) for s in ("a", "b", "c")
                 for k, t in (("trigger", 0), ("update", 60), ("resolve", 120))]
        for receiver in ("pd", "slack"):
            for n in notes(receiver, *specs):
                assert service.submit(n) is True
        assert _wait(lambda: all(r.attempts >= 1 for r in outbox.rows()
                                 if r.kind == "trigger"))
        assert {r.status for r in outbox.rows()} == {"pending"}
        pagerduty.up()
        slack.up()
        assert _wait(lambda: outbox.pending_count() == 0)
    finally:
        service.stop()
    assert {r.status for r in outbox.rows()} == {"delivered"}
    # PagerDuty accepted exactly the nine events, each once, in order per alert.
    events = pagerduty.events(accepted_only=True)
    assert len(events) == 9
    for service_name in ("a", "b", "c"):
        expected = [{"routing_key": ROUTING_KEY, **pd.event(n)}
                    for n in notes("pd", *[(service_name, k, t) for k, t in
                                           (("trigger", 0), ("update", 60), ("resolve", 120))])]
        assert [e for e in events if e["dedup_key"] == expected[0]["dedup_key"]] == expected
    # Slack: three roots, each with the update then the resolve as replies, each edited once.
    assert len(slack.messages) == 9
    roots = [m for m in slack.messages if m.thread_ts is None]
    assert len(roots) == 3
    for root in roots:
        replies = [m for m in slack.messages if m.thread_ts == root.ts]
        assert [m.text.split("]")[0] for m in replies] == ["[FIRING (update)", "[RESOLVED"]
    assert sorted(e.ts for e in slack.edits) == sorted(r.ts for r in roots)


@pytest.mark.timeout(60)
def test_one_receivers_outage_does_not_hold_up_another(
        pagerduty: FakePagerDuty, slack: FakeSlack, outbox: Outbox) -> None:
    pd = PagerDutyNotifier("pd", SecretStr(ROUTING_KEY), url=pagerduty.url)
    sl = SlackNotifier("slack", bot_token=SecretStr(BOT_TOKEN), channel="#llm-alerts",
                       url=slack.api_url)
    service = DeliveryService(outbox, {"pd": DeliveryWorker(pd, outbox, policy=FAST),
                                       "slack": DeliveryWorker(sl, outbox, policy=FAST)})
    slack.down()
    service.start()
    try:
        for n in notes("slack", ("a", "trigger", 0)) + notes("pd", ("a", "trigger", 0)):
            service.submit(n)
        assert pagerduty.wait_for(lambda: len(pagerduty.events(accepted_only=True)) == 1)
        assert _wait(lambda: outbox.pending_count("pd") == 0)
        assert outbox.pending_count("slack") == 1
    finally:
        service.stop()


def _wait(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll with a deadline (the workers run in threads)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_permanent_failure_does_not_block_the_alerts_later_notifications(
        outbox: Outbox, clock: FakeClock) -> None:
    notifier = ScriptedNotifier("x", Failed("V answered 400: bad"))
    for n in notes("x", ("chat", "trigger", 0), ("chat", "resolve", 60)):
        outbox.enqueue(n, clock.now())
    DeliveryWorker(notifier, outbox, clock=clock).drain(60)
    assert [(r.kind, r.status) for r in outbox.rows()] == [
        ("trigger", "failed"), ("resolve", "delivered")]


def test_a_vendor_failing_for_a_while_gets_each_notification_once_in_order(
        pagerduty: FakePagerDuty, outbox: Outbox, clock: FakeClock) -> None:
    """PagerDuty answers 503, 502 and 429 (Retry-After) for a while: nothing is lost, nothing
    accepted twice, and each alert's events arrive in the order they happened."""
    pd = PagerDutyNotifier("pd", SecretStr(ROUTING_KEY), url=pagerduty.url)
    failures = [server_error(503), server_error(502),
                Scripted(429, THROTTLED.body, {"Retry-After": "30"}), server_error(500)]
    pagerduty.script(*failures)
    specs = [(s, k, t) for k, t in (("trigger", 0), ("update", 60), ("resolve", 120))
             for s in ("a", "b")]  # interleaved: a, b, a, b ...
    sent = notes("pd", *specs)
    for n in sent:
        outbox.enqueue(n, clock.now())
    worker = DeliveryWorker(pd, outbox, clock=clock, policy=FAST, jitter=lambda: 0.0,
                            budget=TokenBucket(100, 100))
    assert worker.drain(timeout_s=600) == 0
    assert [r.status for r in pagerduty.requests] == [503, 502, 429, 500] + [202] * 6
    assert sum(clock.waits) >= 30  # the 429's Retry-After paused the receiver
    accepted = pagerduty.events(accepted_only=True)
    for service_name in ("a", "b"):
        mine = [n for n in sent if n.alerts[0].labels == (("service", service_name),)]
        assert [e for e in accepted if e["dedup_key"] == mine[0].dedup_key] == [
            {"routing_key": ROUTING_KEY, **pd.event(n)} for n in mine]
    # Both alerts' heads took turns through the failures; later rows went on the first try.
    assert [r.attempts for r in outbox.rows()] == [3, 3, 1, 1, 1, 1]
