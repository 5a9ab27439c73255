"""End to end: OpenTelemetry SDK spans -> Kafka (real broker) -> `spanwatch run` (a subprocess,
shipped rules, Bytewax recovery on) -> PagerDuty and Slack (local fakes) and the daily digest.

One run covers the incidents scenario (`scenarios.incidents`): each service has its own
incident, 2 hours into about 3 hours of compressed event time. A second run covers the same
services on a quiet day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.broker import KafkaUnderTest
from tests.e2e import scenarios
from tests.e2e.conftest import Traffic, run_to_end, traffic_of
from tests.e2e.harness import RunResult

pytestmark = pytest.mark.kafka
MINUTE_S = 60


def _minute_of(result_ns: int, scenario_start_ns: int) -> float:
    return (result_ns - scenario_start_ns) / 1e9 / MINUTE_S


def _text(message: dict[str, Any]) -> str:
    """A Slack message's fallback text and every block's text, as a reader sees them."""
    parts = [message["text"]]
    for block in message.get("blocks", []):
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(text.get("text", ""))
        for element in block.get("elements", []):
            parts.append(element.get("text", ""))
    return "\n".join(parts)


def _summary(event: dict[str, Any]) -> str:
    return str(event.get("payload", {}).get("summary", ""))


def test_error_burst_pages_then_resolves(incidents_run: RunResult,
                                         incidents_traffic: Traffic) -> None:
    start_ns = incidents_traffic.scenario.start_ns
    # The burst is the only anthropic traffic, so the provider-wide rule fires too and (as
    # alerts.toml's inhibition says) mutes the per-app page: one page, for the provider.
    pages = [e for e in incidents_run.pages() if "provider=anthropic" in _summary(e)]
    assert [e["payload"]["class"] for e in pages] == ["provider-error-rate-high"]
    page = pages[0]
    details = page["payload"]["custom_details"]
    assert details["labels"] == {"provider": "anthropic"}
    assert "claude-3-5-haiku" in details["versions"]
    assert len(details["exemplar_traces"]) == 5
    onset = _minute_of(incidents_run_sequence(incidents_run, page["dedup_key"], "trigger"),
                       start_ns)
    # Breach from the first burst minute on; `for = "5m"` plus the 5-minute window's fill.
    assert scenarios.BURST[0] + 5 <= onset <= scenarios.BURST[0] + 10
    resolves = [e for e in incidents_run.pages("resolve") if e["dedup_key"] == page["dedup_key"]]
    assert len(resolves) == 1
    assert incidents_run.pagerduty.index(resolves[0]) > incidents_run.pagerduty.index(page)
    resolved_at = _minute_of(incidents_run_sequence(incidents_run, page["dedup_key"], "resolve"),
                             start_ns)
    # Clears once the 5-minute window is below 5%, then `keep_firing_for` (5m) runs out.
    assert scenarios.BURST[1] <= resolved_at <= scenarios.BURST[1] + 15
    assert not [e for e in incidents_run.pages() if "checkout-bot" in _summary(e)]
    slack = incidents_run.slack_about("provider-error-rate-high")
    assert [m["text"].split("]")[0] for m in slack] == ["[FIRING", "[RESOLVED"]


def incidents_run_sequence(run: RunResult, dedup_key: str, kind: str) -> int:
    """Event time (ns) of the delivered outbox row of `dedup_key` and `kind`."""
    rows = [r for r in run.outbox if r.dedup_key == dedup_key and r.kind == kind]
    assert len(rows) == 1, rows
    assert rows[0].status == "delivered"
    return rows[0].sequence


def test_cost_spike_after_prompt_change_goes_to_slack_with_version_and_attribution(
        incidents_run: RunResult, incidents_traffic: Traffic) -> None:
    messages = incidents_run.slack_about("cost-per-request-spike")
    assert [m["text"].split("]")[0] for m in messages] == ["[FIRING"]
    text = _text(messages[0])
    assert "service=support-bot" in text
    assert "prompt_template_version: v2" in text  # the version live in the alert's window
    # Cost attribution (LMDI): the longer v2 prompt shows as tokens per request, all of it.
    assert "*Cost change*" in text
    assert "tokens per request: +$" in text
    assert "(100%)" in text.split("tokens per request:")[1].split("\n")[0]
    onset = _minute_of(incidents_run_sequence(
        incidents_run, 'spanwatch/slack/cost-per-request-spike{service="support-bot"}',
        "trigger"), incidents_traffic.scenario.start_ns)
    # The 15-minute mean crosses 2x part-way into v2 (the rising values meanwhile raise the
    # 2-hour baseline a little), then `for = "15m"`.
    assert scenarios.CHANGE_AT + 15 <= onset <= scenarios.CHANGE_AT + 45
    assert not [e for e in incidents_run.pagerduty if "support-bot" in str(e)]  # tier 2


def test_quality_drift_goes_to_slack(incidents_run: RunResult) -> None:
    messages = incidents_run.slack_about("quality-score-drop")
    assert [m["text"].split("]")[0] for m in messages] == ["[FIRING"]
    text = _text(messages[0])
    assert "service=search-assistant" in text
    assert "vs 2h mean 0.8" in text  # the learned baseline (quality 0.85 before the drop)
    assert not [e for e in incidents_run.pagerduty if "search-assistant" in str(e)]


def test_safety_eval_failure_pages_at_once(incidents_run: RunResult,
                                           incidents_traffic: Traffic) -> None:
    pages = [e for e in incidents_run.pages() if e["payload"]["class"] == "safety-eval-failure"]
    assert len(pages) == 1
    details = pages[0]["payload"]["custom_details"]
    assert details["labels"]["service"] == "tutor-bot"
    assert details["value"] == "safety_failures 1"
    at = _minute_of(incidents_run_sequence(incidents_run, pages[0]["dedup_key"], "trigger"),
                    incidents_traffic.scenario.start_ns)
    # The failing request starts in minute UNSAFE_AT and ends in it or the next: the page is
    # for that minute, with no `for` delay.
    assert scenarios.UNSAFE_AT + 1 <= at <= scenarios.UNSAFE_AT + 2
    assert [e["event_action"] for e in incidents_run.pagerduty
            if e["dedup_key"] == pages[0]["dedup_key"]] == ["trigger", "resolve"]


def test_tier3_findings_go_to_the_digest_only(incidents_run: RunResult,
                                              incidents_traffic: Traffic) -> None:
    digest = incidents_run.digest_preview
    assert "## Tier-3 alerts" in digest
    tier3 = digest.split("## Tier-3 alerts")[1]
    assert "ttft-p50-target" in tier3 and "service=docs-bot" in tier3
    assert "ttft-p50-target" not in str(incidents_run.slack) + str(incidents_run.pagerduty)
    # The usage summary counts every published model call exactly once.
    assert f"{incidents_traffic.llm_calls:,} requests" in digest


def test_quiet_day_pages_nobody(kafka: KafkaUnderTest, tmp_path: Path) -> None:
    """The same services and 170 minutes, without incidents (a quiet day, compressed like the
    incidents scenario: detectors warm up and evaluate over the same span of event time)."""
    traffic = traffic_of(scenarios.quiet())
    result = run_to_end(kafka, tmp_path, traffic)
    assert result.pagerduty == []
    assert result.slack == []
    assert [r for r in result.outbox if r.receiver != "digest"] == []
    assert f"{traffic.llm_calls:,} requests" in result.digest_preview  # it did see the day
