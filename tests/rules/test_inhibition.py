"""Inhibition and silences: who mutes whom, lifting, and the chain lifecycle -> grouping."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from rules.grouping import AlertGroup, Grouper, GroupPolicy
from rules.inhibition import AlertMatcher, Inhibitor, InhibitRule
from rules.lifecycle import AlertLifecycle, LifecyclePolicy
from rules.records import AlertEvent, Labels
from tests.rules.test_lifecycle import (
    MIN,
    OTHER,
    SERIES,
    T0,
    evaluation,
    event,
    recovered,
)

PROVIDER_WIDE: Labels = (("provider", "openai"),)
APP: Labels = (("provider", "openai"), ("service", "chat"))
OTHER_PROVIDER_APP: Labels = (("provider", "anthropic"), ("service", "chat"))
SEC = 1_000_000_000


def page(minute: float = 0, labels: Labels = SERIES, state: str = "firing") -> AlertEvent:
    return event(minute, state, rule="error-rate-high", tier=1, labels=labels)


def slack(minute: float = 0, labels: Labels = SERIES, state: str = "firing") -> AlertEvent:
    return event(minute, state, rule="cost-per-request-spike", tier=2, labels=labels)


def resolved(e: AlertEvent, minute: float) -> AlertEvent:
    return replace(e, state="resolved", previous="firing", at_unix_ns=T0 + int(minute * MIN))


def test_tier1_firing_suppresses_tier2_on_the_same_series() -> None:
    inhibitor = Inhibitor()
    source = page()
    inhibitor.update(source)
    (target,) = inhibitor.update(slack(1))
    assert target.suppressed_by == (source.fingerprint,)


def test_tier1_firing_does_not_suppress_tier2_on_another_series() -> None:
    inhibitor = Inhibitor()
    inhibitor.update(page())
    (target,) = inhibitor.update(slack(1, labels=OTHER))
    assert target.suppressed_by == ()


def test_tier2_does_not_suppress_tier1() -> None:
    inhibitor = Inhibitor()
    inhibitor.update(slack())
    source, resent_target = inhibitor.update(page(1))
    assert source.suppressed_by == ()
    assert resent_target.suppressed_by == (source.fingerprint,)


def test_default_rule_lets_a_provider_wide_page_suppress_per_app_tier2_alerts() -> None:
    inhibitor = Inhibitor()
    source = page(labels=PROVIDER_WIDE)
    inhibitor.update(source)
    assert inhibitor.suppressed_by(slack(1, labels=APP)) == (source.fingerprint,)
    assert inhibitor.suppressed_by(slack(1, labels=OTHER_PROVIDER_APP)) == ()


def test_provider_wide_rule_suppresses_per_app_alerts_of_any_tier_with_equal_provider() -> None:
    rule = InhibitRule(source=AlertMatcher(rules=("provider-error-rate",)),
                       target=AlertMatcher(), equal=("provider",))
    inhibitor = Inhibitor(rules=(rule,))
    source = event(0, rule="provider-error-rate", tier=1, labels=PROVIDER_WIDE)
    inhibitor.update(source)
    (same,) = inhibitor.update(page(1, labels=APP))
    (other,) = inhibitor.update(page(1, labels=OTHER_PROVIDER_APP))
    assert (same.suppressed_by, other.suppressed_by) == ((source.fingerprint,), ())


def test_equal_label_missing_on_both_sides_does_not_inhibit() -> None:
    rule = InhibitRule(AlertMatcher(tiers=(1,)), AlertMatcher(tiers=(2,)), equal=("endpoint",))
    inhibitor = Inhibitor(rules=(rule,))
    inhibitor.update(page())
    assert inhibitor.suppressed_by(slack(1)) == ()


def test_alert_never_inhibits_itself() -> None:
    rule = InhibitRule(AlertMatcher(), AlertMatcher())
    inhibitor = Inhibitor(rules=(rule,))
    (only,) = inhibitor.update(page())
    assert only.suppressed_by == ()


def test_source_resolving_lifts_the_target_which_is_resent_unsuppressed() -> None:
    inhibitor = Inhibitor()
    source, target = page(), slack(1)
    inhibitor.update(source)
    inhibitor.update(target)
    out = inhibitor.update(resolved(source, 5))
    assert [(e.rule, e.state, e.previous, e.suppressed_by) for e in out] == [
        ("error-rate-high", "resolved", "firing", ()),
        ("cost-per-request-spike", "firing", "firing", ())]
    assert out[1].at_unix_ns == T0 + 5 * MIN and not out[1].is_repeat


def test_source_firing_after_the_target_mutes_it_with_a_resent_event() -> None:
    inhibitor = Inhibitor()
    target, source = slack(0), page(1)
    inhibitor.update(target)
    out = inhibitor.update(source)
    assert [(e.rule, e.suppressed_by) for e in out] == [
        ("error-rate-high", ()), ("cost-per-request-spike", (source.fingerprint,))]


def test_resolved_target_is_not_lifted_later() -> None:
    inhibitor = Inhibitor()
    source, target = page(), slack(1)
    inhibitor.update(source)
    inhibitor.update(target)
    inhibitor.update(resolved(target, 2))
    assert [e.rule for e in inhibitor.update(resolved(source, 3))] == ["error-rate-high"]
    assert len(inhibitor) == 0


def test_silence_via_the_callable_marks_the_event_with_the_silence_id() -> None:
    calls: list[tuple[str, Labels, datetime]] = []

    def is_silenced(rule: str, labels: Labels, at: datetime) -> str | None:
        calls.append((rule, labels, at))
        return "silence-42" if rule == "cost-per-request-spike" else None

    inhibitor = Inhibitor(is_silenced=is_silenced)
    (muted,) = inhibitor.update(slack(3, labels=OTHER))
    loud, muted_again = inhibitor.update(page(3, labels=OTHER))
    assert (muted.suppressed_by, loud.suppressed_by) == (("silence-42",), ())
    assert muted_again.suppressed_by == (loud.fingerprint, "silence-42")
    assert calls[0] == ("cost-per-request-spike", OTHER, slack(3).at)


def test_inhibition_and_silence_are_both_listed() -> None:
    inhibitor = Inhibitor(is_silenced=lambda rule, labels, at: "silence-1")
    source = page()
    inhibitor.update(source)
    (target,) = inhibitor.update(slack(1))
    assert target.suppressed_by == (source.fingerprint, "silence-1")


def test_silence_expiring_while_firing_is_picked_up_by_tick() -> None:
    ends = T0 + 10 * MIN

    def is_silenced(rule: str, labels: Labels, at: datetime) -> str | None:
        return "maintenance" if at.timestamp() * 1e9 < ends else None

    inhibitor = Inhibitor(is_silenced=is_silenced)
    (muted,) = inhibitor.update(slack(0))
    assert muted.suppressed_by == ("maintenance",)
    assert inhibitor.tick(ends - MIN) == []
    (lifted,) = inhibitor.tick(ends)
    assert (lifted.suppressed_by, lifted.at_unix_ns) == ((), ends)
    assert inhibitor.tick(ends + MIN) == []


def test_snapshot_restore_keeps_the_sources() -> None:
    inhibitor = Inhibitor()
    source = page()
    inhibitor.update(source)
    restored = Inhibitor.restore(recovered(inhibitor.snapshot()))
    (target,) = restored.update(slack(1))
    assert target.suppressed_by == (source.fingerprint,)


def test_restore_rejects_another_state_version() -> None:
    with pytest.raises(ValueError, match="InhibitorState version 0 is not supported"):
        Inhibitor.restore(replace(Inhibitor().snapshot(), version=0))


def test_inhibited_alert_notifies_through_grouping_once_its_source_resolves() -> None:
    """lifecycle -> inhibition -> grouping, as the flow wires them."""
    lifecycle, inhibitor = AlertLifecycle(), Inhibitor()
    grouper = Grouper(GroupPolicy(group_wait=timedelta(seconds=30),
                                  group_interval=timedelta(minutes=5)))
    policy = LifecyclePolicy()
    notes: list[AlertGroup] = []
    for minute in range(20):
        now = T0 + minute * MIN
        page_kind = "B" if minute < 8 else "C"
        evaluations = [evaluation(minute, page_kind),
                       evaluation(minute, "B", rule="cost-per-request-spike", tier=2)]
        for ev in evaluations:
            for alert in lifecycle.observe(ev, policy):
                for marked in inhibitor.update(alert):
                    grouper.add(marked, now)
        notes += grouper.flush(now + 30 * SEC)
    # Both groups flush on their group_interval grid (0.5, 5.5, 10.5 min): the page's resolve
    # and the lifted tier-2 alert go out together at 10.5.
    assert [(n.rule, len(n.firing), len(n.resolved), n.at_unix_ns) for n in notes] == [
        ("error-rate-high", 1, 0, T0 + 30 * SEC),
        ("cost-per-request-spike", 1, 0, T0 + 10 * MIN + 30 * SEC),
        ("error-rate-high", 0, 1, T0 + 10 * MIN + 30 * SEC)]
