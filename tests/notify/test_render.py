"""AlertEvents render into a content-free Notification carrying what an alert must carry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notify.attribution import CostAggregate, ModelUsage, attribute_cost
from notify.records import TraceLink, notification_from_json, notification_to_json
from notify.render import (
    build_notification,
    dedup_key,
    kind_of,
    plain_text,
    trace_links,
    validate_trace_url_template,
)
from tests.notify.conftest import TRACES, make_event

JAEGER = "http://jaeger:16686/trace/{trace_id}"


def test_one_alert_renders_every_field_an_alert_carries() -> None:
    event = make_event()
    n = build_notification([event], receiver="pagerduty", kind="trigger", metric="error_rate",
                           runbook="Roll back the last prompt change.",
                           trace_url_template=JAEGER)
    assert n.receiver == "pagerduty" and n.kind == "trigger" and n.tier == 1
    assert n.dedup_key == f"spanwatch/pagerduty/{event.fingerprint}"
    assert n.sequence == event.at_unix_ns
    assert n.title == "[FIRING] error-rate-high: error_rate 0.12 (model=gpt-4o, service=chat)"
    assert n.summary == ("error_rate 0.12 vs threshold 0.05 over 5m, "
                         "since 2024-05-06 11:55:00Z")
    (line,) = n.alerts
    assert line.labels == (("model", "gpt-4o"), ("service", "chat"))
    assert line.started_at == datetime(2024, 5, 6, 11, 55, tzinfo=UTC)
    assert line.window_s == 300.0
    assert line.traces == tuple(TraceLink(t, f"http://jaeger:16686/trace/{t}")
                                for t in TRACES[:5])
    assert line.versions == (("prompt_template_version", ("v12", "v13")),
                             ("model", ("gpt-4o",)))
    assert line.changed == ("prompt_template_version",)
    assert n.runbook == "Roll back the last prompt change."


def test_a_baseline_alert_says_how_far_from_the_baseline() -> None:
    event = make_event(threshold=None, baseline=0.03, value=0.09)
    n = build_notification([event], receiver="slack", kind="trigger", metric="cost_per_request")
    assert n.alerts[0].compared_text == "baseline 0.03, 3.00x baseline"


def test_plain_text_shows_versions_traces_attribution_and_runbook() -> None:
    base = CostAggregate((ModelUsage("gpt-4o", 100, 50_000, 0, 20_000, 2.5, 1.25, 10.0),))
    now = CostAggregate((ModelUsage("gpt-4o", 200, 100_000, 0, 40_000, 2.5, 1.25, 10.0),))
    n = build_notification([make_event()], receiver="console", kind="trigger",
                           metric="error_rate", runbook="Check it.", trace_url_template=JAEGER,
                           attribution=attribute_cost(base, now))
    text = plain_text(n)
    assert "versions: prompt_template_version: v12, v13 (changed near onset); model: gpt-4o" \
        in text
    assert f"trace {TRACES[0]} http://jaeger:16686/trace/{TRACES[0]}" in text
    assert TRACES[5] not in text  # five exemplars at most
    assert "request volume: +$0.325 (100%)" in text
    assert text.endswith("runbook: Check it.")


def test_a_group_of_alerts_is_one_notification_with_one_line_each() -> None:
    events = [make_event(labels=(("service", s),)) for s in ("chat", "search", "agent")]
    n = build_notification(events, receiver="slack", kind="trigger", metric="error_rate")
    assert n.title == "[FIRING] error-rate-high: 3 series"
    assert [line.labels for line in n.alerts] == [
        (("service", "agent"),), (("service", "chat"),), (("service", "search"),)]
    assert n.dedup_key.startswith("spanwatch/slack/group-")
    again = build_notification(list(reversed(events)), receiver="slack", kind="trigger")
    assert again.dedup_key == n.dedup_key


def test_alerts_of_different_rules_are_not_grouped() -> None:
    with pytest.raises(ValueError, match="one rule"):
        build_notification([make_event(), make_event(rule="ttft-p99-high")], receiver="s",
                           kind="trigger")


def test_a_test_notification_is_marked_as_a_test() -> None:
    n = build_notification([make_event()], receiver="slack", kind="trigger", is_test=True)
    assert n.title.startswith("[TEST FIRING]")
    assert n.summary.startswith("spanwatch test-receiver: not a real incident.")


@pytest.mark.parametrize(("state", "previous", "is_repeat", "kind"), [
    ("firing", "pending", False, "trigger"),
    ("firing", "firing", False, "update"),
    ("firing", "firing", True, "repeat"),
    ("resolved", "firing", False, "resolve"),
    ("pending", "inactive", False, None),
])
def test_kind_of_maps_lifecycle_transitions(state: str, previous: str, is_repeat: bool,
                                            kind: str | None) -> None:
    event = make_event(state=state, previous=previous, is_repeat=is_repeat)  # type: ignore[arg-type]
    assert kind_of(event) == kind


def test_dedup_keys_stay_within_pagerdutys_255_characters() -> None:
    assert dedup_key("pd", "abc") == "spanwatch/pd/abc"
    long_key = dedup_key("r" * 300, "abc")
    assert len(long_key) <= 255
    assert long_key == dedup_key("r" * 300, "abc")  # stable


def test_trace_url_template_must_use_trace_id_only() -> None:
    assert validate_trace_url_template(JAEGER) == JAEGER
    for bad in ("http://tempo/{traceId}", "http://x/{trace_id}/{span_id}", "http://x/"):
        with pytest.raises(ValueError, match=r"must contain \{trace_id\}"):
            validate_trace_url_template(bad)


def test_trace_links_are_unique_and_url_quoted() -> None:
    links = trace_links(["a/b", "a/b", "", "c"], "https://lf/trace/{trace_id}")
    assert links == (TraceLink("a/b", "https://lf/trace/a%2Fb"),
                     TraceLink("c", "https://lf/trace/c"))
    assert trace_links(["x"], None) == (TraceLink("x", None),)


def test_a_notification_round_trips_through_its_outbox_json() -> None:
    base = CostAggregate((ModelUsage("m", 1, 1, 0, 1, 1, 1, 1),))
    n = build_notification([make_event()], receiver="pd", kind="trigger",
                           trace_url_template=JAEGER, attribution=attribute_cost(base, base))
    assert notification_from_json(notification_to_json(n)) == n
