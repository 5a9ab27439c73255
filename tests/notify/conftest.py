"""Shared pieces of the notify tests: secrets, fake vendors, alert events, an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from rules.records import AlertEvent, AlertState, Evaluation, Labels, fingerprint
from tests.fakes.pagerduty_server import FakePagerDuty
from tests.fakes.slack_server import FakeSlack

ROUTING_KEY = "R0UT1NGKEYsecret0123456789abcdef"  # 32 characters, like a real integration key
BOT_TOKEN = "xoxb-1111-2222-SECRETbotTOKEN"
WEBHOOK_SECRET = "WEBHOOKsecretTOKEN0123456789"
T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000
TRACES = tuple(f"{i:032x}" for i in range(1, 8))  # seven exemplars; five are shown


class FakeClock:
    """An injected clock: `wait` returns at once and moves time forward by the timeout."""

    def __init__(self, start: datetime = T0) -> None:
        self.at = start
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.at

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.at += timedelta(seconds=seconds)

    def wait(self, wake: threading.Event, timeout_s: float) -> bool:
        self.waits.append(timeout_s)
        self.advance(max(0.0, timeout_s))
        return False


def make_event(*, rule: str = "error-rate-high", tier: int = 1,
               labels: Labels = (("model", "gpt-4o"), ("service", "chat")),
               state: AlertState = "firing", previous: AlertState = "pending",
               at_s: float = 0.0, value: float | None = 0.12, threshold: float | None = 0.05,
               baseline: float | None = None, exemplars: tuple[str, ...] = TRACES,
               versions: tuple[tuple[str, tuple[str, ...]], ...] = (
                   ("prompt_template_version", ("v12", "v13")), ("model", ("gpt-4o",))),
               changed: tuple[str, ...] = ("prompt_template_version",),
               is_repeat: bool = False) -> AlertEvent:
    at_ns = T0_NS + int(at_s * 1e9)
    evaluation = Evaluation(
        rule=rule, tier=tier, labels=labels, at_unix_ns=at_ns, window_s=300.0,
        is_breach=state == "firing", value=value, threshold=threshold, baseline=baseline,
        samples=200, exemplar_trace_ids=exemplars, versions=versions, changed=changed)
    return AlertEvent(
        fingerprint=fingerprint(rule, labels), rule=rule, tier=tier, labels=labels, state=state,
        previous=previous, at_unix_ns=at_ns, started_at_unix_ns=T0_NS - 300 * 1_000_000_000,
        evaluation=evaluation, is_repeat=is_repeat)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(ROUTING_KEY) as fake:
        yield fake


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(bot_token=BOT_TOKEN, webhook_secret=WEBHOOK_SECRET) as fake:
        yield fake
