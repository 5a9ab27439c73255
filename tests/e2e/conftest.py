"""Fixtures of the end-to-end tests: local PagerDuty and Slack, scenario traffic published to
the real broker, and `spanwatch run` subprocesses over it (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.broker import KafkaUnderTest, new_topic
from tests.e2e import scenarios
from tests.e2e.harness import ROUTING_KEY, RunResult, Spanwatch, e2e_rules, result_of
from tests.e2e.traffic import Scenario, clock_messages, messages, publish
from tests.fakes.pagerduty_server import FakePagerDuty
from tests.fakes.slack_server import FakeSlack

PARTITIONS = 2
RUN_TIMEOUT_S = 180


@dataclass(frozen=True)
class Traffic:
    scenario: Scenario
    items: list[tuple[bytes, bytes]]
    markers: list[bytes]

    @property
    def llm_calls(self) -> int:
        return sum(s.per_minute * (s.minutes[1] - s.minutes[0])
                   for s in self.scenario.services) + len(self.markers) * PARTITIONS


def traffic_of(scenario: Scenario) -> Traffic:
    return Traffic(scenario, list(messages(scenario)),
                   clock_messages(scenario, scenarios.END_MARKERS))


@dataclass
class Vendors:
    pagerduty: FakePagerDuty
    slack: FakeSlack


@pytest.fixture
def vendors() -> Iterator[Vendors]:
    with FakePagerDuty(ROUTING_KEY) as pagerduty, \
            FakeSlack(bot_token="xoxb-e2e", webhook_secret="e2eWEBHOOKsecret") as slack:
        yield Vendors(pagerduty, slack)


def new_spanwatch(kafka: KafkaUnderTest, workdir: Path, vendors: Vendors, topic: str,
                  **options: object) -> Spanwatch:
    workdir.mkdir(parents=True, exist_ok=True)
    return Spanwatch(kafka, topic, workdir, e2e_rules(vendors.pagerduty.url, scenarios.COMPRESS),
                     vendors.pagerduty.url, vendors.slack.webhook_url, **options)  # type: ignore[arg-type]


def run_to_end(kafka: KafkaUnderTest, workdir: Path, traffic: Traffic) -> RunResult:
    """Publish `traffic` to a fresh topic and run `spanwatch run` over it until its end."""
    with FakePagerDuty(ROUTING_KEY) as pagerduty, \
            FakeSlack(bot_token="xoxb-e2e", webhook_secret="e2eWEBHOOKsecret") as slack:
        topic = new_topic(kafka, partitions=PARTITIONS)
        publish(kafka.bootstrap, topic, traffic.items, PARTITIONS, markers=traffic.markers)
        spanwatch = new_spanwatch(kafka, workdir, Vendors(pagerduty, slack), topic)
        spanwatch.start()
        try:
            spanwatch.wait_for_end(RUN_TIMEOUT_S)
        finally:
            spanwatch.stop()
        assert spanwatch.process is not None
        assert spanwatch.process.returncode == 0, spanwatch.log()[-3000:]  # SIGINT: clean stop
        return result_of(spanwatch, pagerduty, slack)


@pytest.fixture(scope="session")
def incidents_traffic() -> Traffic:
    return traffic_of(scenarios.incidents())


@pytest.fixture(scope="session")
def incidents_run(kafka: KafkaUnderTest, incidents_traffic: Traffic,
                  tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One uninterrupted run over the incidents scenario, shared by the incident tests and the
    recovery test's comparison."""
    return run_to_end(kafka, tmp_path_factory.mktemp("incidents"), incidents_traffic)
