"""The PagerDuty notifier: the real `pagerduty` client against a local Events API v2 server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import SecretStr

from notify.attribution import CostAggregate, ModelUsage, attribute_cost
from notify.pagerduty import MAX_SUMMARY, TRUNCATION_MARK, PagerDutyNotifier
from notify.records import Delivered, Failed, Retry
from notify.render import build_notification
from tests.fakes.pagerduty_server import (
    THROTTLED,
    FakePagerDuty,
    Scripted,
    self_signed_tls,
    server_error,
)
from tests.notify.conftest import ROUTING_KEY, TRACES, make_event

JAEGER = "http://jaeger:16686/trace/{trace_id}"


def notifier(fake: FakePagerDuty) -> PagerDutyNotifier:
    return PagerDutyNotifier("pagerduty", SecretStr(ROUTING_KEY), url=fake.url)


def test_a_trigger_is_one_exact_events_api_v2_request(pagerduty: FakePagerDuty) -> None:
    event = make_event()
    n = build_notification([event], receiver="pagerduty", kind="trigger", metric="error_rate",
                           runbook="Roll back the last prompt change.",
                           trace_url_template=JAEGER)
    delivery = notifier(pagerduty).send(n)
    key = f"spanwatch/pagerduty/{event.fingerprint}"
    assert delivery == Delivered(f"PagerDuty accepted the trigger event, dedup_key={key}")
    (request,) = pagerduty.requests
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    assert request.headers["content-type"] == "application/json"
    links = [{"href": f"http://jaeger:16686/trace/{t}", "text": f"trace {t}"} for t in TRACES[:5]]
    assert request.json() == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": key,
        "client": "spanwatch",
        "payload": {
            "summary": "[FIRING] error-rate-high: error_rate 0.12 (model=gpt-4o, service=chat)",
            "source": "chat",
            "severity": "critical",
            "timestamp": "2024-05-06T11:55:00+00:00",
            "component": "error_rate",
            "group": "tier 1",
            "class": "error-rate-high",
            "custom_details": {
                "rule": "error-rate-high",
                "tier": 1,
                "kind": "trigger",
                "summary": "error_rate 0.12 vs threshold 0.05 over 5m, "
                           "since 2024-05-06 11:55:00Z",
                "labels": {"model": "gpt-4o", "service": "chat"},
                "value": "error_rate 0.12",
                "compared_with": "threshold 0.05",
                "window": "5m",
                "started_at": "2024-05-06 11:55:00Z",
                "versions": "prompt_template_version: v12, v13 (changed near onset); "
                            "model: gpt-4o",
                "changed_near_onset": ["prompt_template_version"],
                "exemplar_traces": [f"http://jaeger:16686/trace/{t}" for t in TRACES[:5]],
                "runbook": "Roll back the last prompt change.",
            },
        },
        "links": links,
    }
    assert pagerduty.alerts == {key: "triggered"}


def test_a_resolve_reuses_the_dedup_key_and_routing_key(pagerduty: FakePagerDuty) -> None:
    pd = notifier(pagerduty)
    pd.send(build_notification([make_event()], receiver="pagerduty", kind="trigger"))
    resolved = make_event(state="resolved", previous="firing", at_s=300)
    delivery = pd.send(build_notification([resolved], receiver="pagerduty", kind="resolve"))
    assert isinstance(delivery, Delivered)
    trigger, resolve = pagerduty.events()
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": trigger["dedup_key"]}
    assert pagerduty.alerts == {trigger["dedup_key"]: "resolved"}


def test_severity_follows_the_tier_mapping(pagerduty: FakePagerDuty) -> None:
    pd = PagerDutyNotifier("pagerduty", SecretStr(ROUTING_KEY), url=pagerduty.url,
                           severity_by_tier={1: "error", 2: "info"})
    pd.send(build_notification([make_event(tier=2)], receiver="pagerduty", kind="trigger"))
    pd.send(build_notification([make_event(tier=4, rule="r")], receiver="pagerduty",
                               kind="trigger"))
    assert [e["payload"]["severity"] for e in pagerduty.events()] == ["info", "error"]


def test_a_400_fails_at_once_quoting_the_vendor_error(pagerduty: FakePagerDuty) -> None:
    wrong = PagerDutyNotifier("pagerduty", SecretStr("x" * 31), url=pagerduty.url)
    delivery = wrong.send(build_notification([make_event()], receiver="pagerduty",
                                             kind="trigger"))
    assert delivery == Failed("PagerDuty answered 400: Event object is invalid: Length of "
                              "'routing_key' is incorrect (should be 32 characters)")
    assert len(pagerduty.requests) == 1


def test_a_429_with_retry_after_is_a_retry_after_that_long(pagerduty: FakePagerDuty) -> None:
    pagerduty.script(Scripted(429, THROTTLED.body, {"Retry-After": "12"}))
    delivery = notifier(pagerduty).send(build_notification([make_event()], receiver="p",
                                                           kind="trigger"))
    assert isinstance(delivery, Retry)
    assert delivery.after is not None and delivery.after.total_seconds() == 12
    assert delivery.why == ("PagerDuty answered 429: Requests for this service are arriving "
                            "too quickly. Please retry later.")
    assert len(pagerduty.requests) == 1  # the client's own endless 429 loop is off


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 507])
def test_429_and_5xx_are_retries_left_to_the_worker(pagerduty: FakePagerDuty,
                                                   status: int) -> None:
    pagerduty.script(THROTTLED if status == 429 else server_error(status))
    delivery = notifier(pagerduty).send(build_notification([make_event()], receiver="p",
                                                           kind="trigger"))
    assert isinstance(delivery, Retry)
    assert delivery.after is None
    assert delivery.why.startswith(f"PagerDuty answered {status}: ")
    assert len(pagerduty.requests) == 1  # no sleeping retries inside the client


def test_a_refused_connection_is_a_retry(pagerduty: FakePagerDuty) -> None:
    pd = notifier(pagerduty)
    pagerduty.down()
    delivery = pd.send(build_notification([make_event()], receiver="p", kind="trigger"))
    assert delivery == Retry(None, "connection error: ConnectError: [Errno 111] Connection "
                                   "refused")


def test_a_long_summary_is_cut_to_1024_with_a_marker_and_said_so(
        pagerduty: FakePagerDuty) -> None:
    labels = tuple((f"label{i}", "v" * 40) for i in range(40))
    n = build_notification([make_event(labels=labels)], receiver="p", kind="trigger")
    delivery = notifier(pagerduty).send(n)
    assert isinstance(delivery, Delivered)
    assert delivery.detail.endswith("(summary truncated)")
    (event,) = pagerduty.events()
    assert len(event["payload"]["summary"]) == MAX_SUMMARY
    assert event["payload"]["summary"].endswith(TRUNCATION_MARK)
    assert event["payload"]["custom_details"]["truncated"] == "summary cut to 1024 characters"


def test_a_cost_alert_carries_its_attribution(pagerduty: FakePagerDuty) -> None:
    base = CostAggregate((ModelUsage("gpt-4o", 100, 50_000, 0, 20_000, 2.5, 1.25, 10.0),))
    now = CostAggregate((ModelUsage("gpt-4o", 100, 100_000, 0, 40_000, 2.5, 1.25, 10.0),))
    n = build_notification([make_event(rule="cost-per-request-spike", tier=2)], receiver="p",
                           kind="trigger", attribution=attribute_cost(base, now))
    notifier(pagerduty).send(n)
    details = pagerduty.events()[0]["payload"]["custom_details"]
    assert details["cost_attribution"][:2] == [
        "cost $0.325 -> $0.65 (+$0.325), LMDI-I additive:", "tokens per request: +$0.325 (100%)"]


def test_a_group_lists_each_alert_in_custom_details(pagerduty: FakePagerDuty) -> None:
    events = [make_event(labels=(("service", s),)) for s in ("a", "b")]
    notifier(pagerduty).send(build_notification(events, receiver="p", kind="trigger"))
    details = pagerduty.events()[0]["payload"]["custom_details"]
    assert [a["labels"] for a in details["alerts"]] == [{"service": "a"}, {"service": "b"}]


def test_a_digest_is_refused_with_a_reason(pagerduty: FakePagerDuty) -> None:
    n = build_notification([make_event()], receiver="p", kind="digest")
    assert isinstance(notifier(pagerduty).send(n), Failed)
    assert pagerduty.requests == []


def test_plain_http_is_refused_except_on_loopback() -> None:
    with pytest.raises(ValueError, match="must use https"):
        PagerDutyNotifier("p", SecretStr(ROUTING_KEY), url="http://gateway.internal:8080")
    PagerDutyNotifier("p", SecretStr(ROUTING_KEY), url="https://gateway.internal")
    PagerDutyNotifier("p", SecretStr(ROUTING_KEY), url="http://[::1]:8080")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_an_https_gateway_with_a_private_ca_works(tmp_path: Path) -> None:
    with self_signed_tls(tmp_path) as (context, ca_file), \
            FakePagerDuty(ROUTING_KEY, tls=context) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        pd = PagerDutyNotifier("p", SecretStr(ROUTING_KEY), url=fake.url, ca_file=ca_file)
        delivery = pd.send(build_notification([make_event()], receiver="p", kind="trigger"))
        assert isinstance(delivery, Delivered)
        untrusted = PagerDutyNotifier("p", SecretStr(ROUTING_KEY), url=fake.url)
        refused = untrusted.send(build_notification([make_event()], receiver="p",
                                                    kind="trigger"))
        assert isinstance(refused, Retry)
        assert "CERTIFICATE_VERIFY_FAILED" in refused.why
