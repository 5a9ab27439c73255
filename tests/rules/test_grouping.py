"""Grouping: group_wait, group_interval, repeat_interval, resolves sent once, storm breaker."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.grouping import AlertGroup, Grouper, GroupPolicy, group_key
from rules.records import AlertEvent, Labels
from tests.rules.test_lifecycle import MIN, T0, event, recovered

SEC = 1_000_000_000
POLICY = GroupPolicy(group_wait=timedelta(seconds=30), group_interval=timedelta(minutes=5),
                     repeat_interval=timedelta(hours=1), storm_threshold=10,
                     storm_window=timedelta(minutes=10))


def series(i: int, provider: str = "openai") -> Labels:
    return (("provider", provider), ("service", f"app-{i:03d}"))


def at(minute: float) -> int:
    return T0 + int(minute * MIN)


def fire(grouper: Grouper, minute: float, n: int, *, rule: str = "error-rate-high",
         first: int = 0) -> list[AlertEvent]:
    """n alerts of `rule` on series first..first+n-1 fire at `minute`."""
    events = [event(minute, labels=series(i), rule=rule) for i in range(first, first + n)]
    for e in events:
        grouper.add(e, e.at_unix_ns)
    return events


def resolve(grouper: Grouper, minute: float, fired: list[AlertEvent]) -> None:
    for e in fired:
        grouper.add(replace(e, state="resolved", previous="firing", at_unix_ns=at(minute)),
                    at(minute))


def flush_every(grouper: Grouper, minutes: range, step_s: int = 10) -> list[AlertGroup]:
    out: list[AlertGroup] = []
    for t in range(minutes.start * 60, minutes.stop * 60, step_s):
        out += grouper.flush(T0 + t * SEC)
    return out


def test_200_series_breaching_within_group_wait_send_one_notification() -> None:
    grouper = Grouper(replace(POLICY, storm_threshold=1000))
    for i in range(200):
        e = event(i * 0.1 / 60, labels=series(i))  # one every 0.1 s: over 20 s
        grouper.add(e, e.at_unix_ns)
    assert grouper.flush(T0 + 29 * SEC) == []
    (note,) = grouper.flush(T0 + 30 * SEC)
    assert (note.key, note.rule, len(note.firing), len(note.new)) == (
        "error-rate-high{}", "error-rate-high", 200, 200)
    assert not note.is_update and not note.is_repeat and note.first_at_unix_ns == T0
    assert flush_every(grouper, range(1, 5)) == []


def test_later_additions_are_batched_by_group_interval() -> None:
    grouper = Grouper(POLICY)
    fire(grouper, 0, 3)
    assert len(grouper.flush(at(0.5))) == 1
    notes: list[AlertGroup] = []
    for minute in range(1, 11):
        if minute <= 3:
            fire(grouper, minute, 1, first=10 + minute)
        notes += flush_every(grouper, range(minute, minute + 1))
    assert [(n.at_unix_ns, len(n.firing), len(n.new), n.is_update) for n in notes] == [
        (at(5.5), 6, 3, True)]


def test_resolves_are_sent_once() -> None:
    grouper = Grouper(POLICY)
    fired = fire(grouper, 0, 5)
    grouper.flush(at(0.5))
    resolve(grouper, 2, fired[:3])
    resolve(grouper, 3, fired[:3])  # a duplicate resolve from a replay changes nothing
    notes = flush_every(grouper, range(1, 30))
    assert [(n.at_unix_ns, len(n.firing), len(n.resolved)) for n in notes] == [(at(5.5), 2, 3)]
    assert {e.fingerprint for e in notes[0].resolved} == {e.fingerprint for e in fired[:3]}


def test_group_is_forgotten_once_every_alert_resolved_was_sent() -> None:
    grouper = Grouper(POLICY)
    fired = fire(grouper, 0, 2)
    grouper.flush(at(0.5))
    resolve(grouper, 1, fired)
    (note,) = grouper.flush(at(5.5))
    assert (note.firing, len(note.resolved)) == ((), 2)
    assert len(grouper) == 0 and grouper.next_flush_at_unix_ns() is None


def test_unchanged_firing_group_is_resent_after_repeat_interval() -> None:
    grouper = Grouper(POLICY)
    fire(grouper, 0, 2)
    notes = flush_every(grouper, range(125), step_s=30)
    assert [(n.at_unix_ns, n.is_repeat, n.new) for n in notes][1:] == [
        (at(60.5), True, ()), (at(120.5), True, ())]


def test_lifecycle_reminders_refresh_an_alert_but_are_not_a_change() -> None:
    grouper = Grouper(POLICY)
    (fired,) = fire(grouper, 0, 1)
    grouper.flush(at(0.5))
    reminder = replace(event(10, labels=series(0), started=0), is_repeat=True)
    grouper.add(reminder, at(10))
    assert flush_every(grouper, range(1, 60)) == []
    (note,) = grouper.flush(at(60.5))
    assert note.firing == (reminder,) and note.is_repeat
    assert fired.fingerprint == reminder.fingerprint


def test_group_by_splits_a_rules_alerts_into_groups() -> None:
    grouper = Grouper(replace(POLICY, group_by=("provider",)))
    for i, provider in enumerate(["openai", "anthropic", "openai"]):
        grouper.add(event(0, labels=series(i, provider)), at(0))
    notes = grouper.flush(at(0.5))
    assert [(n.key, n.labels, len(n.firing)) for n in notes] == [
        ('error-rate-high{provider="anthropic"}', (("provider", "anthropic"),), 1),
        ('error-rate-high{provider="openai"}', (("provider", "openai"),), 2)]


def test_different_rules_never_share_a_group() -> None:
    grouper = Grouper(POLICY)
    fire(grouper, 0, 2, rule="error-rate-high")
    fire(grouper, 0, 2, rule="ttft-p99-high")
    assert [n.rule for n in grouper.flush(at(0.5))] == ["error-rate-high", "ttft-p99-high"]


def test_alert_resolved_before_its_group_was_first_flushed_is_never_notified() -> None:
    grouper = Grouper(POLICY)
    fired = fire(grouper, 0, 1)
    resolve(grouper, 0.25, fired)
    assert flush_every(grouper, range(10)) == []
    assert len(grouper) == 0


def test_resolve_of_an_alert_no_group_knows_is_dropped_and_counted() -> None:
    grouper = Grouper(POLICY)
    grouper.add(event(0, "resolved"), at(0))
    assert grouper.flush(at(10)) == [] and grouper.dropped_resolves == 1


def test_suppressed_alert_is_not_listed_and_notifies_when_lifted() -> None:
    grouper = Grouper(POLICY)
    fire(grouper, 0, 1)
    muted = event(0, labels=series(1), suppressed_by=("source-fp",))
    grouper.add(muted, at(0))
    (first,) = grouper.flush(at(0.5))
    assert [e.labels for e in first.firing] == [series(0)]
    grouper.add(replace(muted, suppressed_by=(), previous="firing", at_unix_ns=at(2)), at(2))
    (update,) = flush_every(grouper, range(1, 10))
    assert update.new == (muted.fingerprint,) and update.at_unix_ns == at(5.5)


def test_group_of_only_suppressed_alerts_sends_nothing() -> None:
    grouper = Grouper(POLICY)
    grouper.add(event(0, suppressed_by=("silence-1",)), at(0))
    assert flush_every(grouper, range(30)) == []


def test_resolve_of_a_notified_alert_is_sent_even_when_it_is_now_silenced() -> None:
    grouper = Grouper(POLICY)
    (fired,) = fire(grouper, 0, 1)
    grouper.flush(at(0.5))
    grouper.add(replace(fired, suppressed_by=("silence-1",), previous="firing"), at(1))
    grouper.add(replace(fired, state="resolved", previous="firing", at_unix_ns=at(2),
                        suppressed_by=("silence-1",)), at(2))
    (note,) = flush_every(grouper, range(1, 10))
    assert [e.fingerprint for e in note.resolved] == [fired.fingerprint]


def test_groups_below_the_storm_threshold_notify_individually() -> None:
    grouper = Grouper(POLICY, key="slack")
    for r in range(POLICY.storm_threshold):
        fire(grouper, 0, 2, rule=f"rule-{r:02d}")
    notes = grouper.flush(at(0.5))
    assert len(notes) == POLICY.storm_threshold and not grouper.is_storm
    assert not any(n.is_storm_summary for n in notes)


def _flood(grouper: Grouper, minute: float, rules: int, per_rule: int = 4) -> None:
    for r in range(rules):
        fire(grouper, minute, per_rule, rule=f"rule-{r:02d}")


def test_flood_across_many_rules_collapses_to_one_summary_per_receiver_key() -> None:
    groupers = [Grouper(POLICY, key="pagerduty"), Grouper(POLICY, key="slack")]
    notes: list[AlertGroup] = []
    for grouper in groupers:
        _flood(grouper, 0, rules=50)
        notes += grouper.flush(at(0.5))
    assert [(n.key, n.is_storm_summary, n.storm_groups, len(n.firing)) for n in notes] == [
        ("storm:pagerduty", True, 50, 200), ("storm:slack", True, 50, 200)]
    summary = notes[0]
    assert summary.storm_counts == tuple((f"rule-{r:02d}", 4) for r in range(50))
    assert summary.storm_sample == tuple((f"rule-{r:02d}", series(0)) for r in range(5))
    assert summary.rule == "" and not summary.is_update


def test_storm_summaries_go_out_at_most_once_per_group_interval() -> None:
    grouper = Grouper(POLICY, key="slack")
    _flood(grouper, 0, rules=20)
    assert [n.is_storm_summary for n in grouper.flush(at(0.5))] == [True]
    for r in range(20):  # one more series per rule a minute later ...
        fire(grouper, 1, 1, rule=f"rule-{r:02d}", first=10)
    for r in range(20, 25):  # ... and five new rules (new groups, due at 2.5 after group_wait)
        fire(grouper, 2, 1, rule=f"rule-{r:02d}")
    notes = flush_every(grouper, range(1, 6))
    assert [(n.at_unix_ns, n.is_storm_summary, n.is_update, n.storm_groups) for n in notes] == [
        (at(5.5), True, True, 25)]
    assert notes[0].first_at_unix_ns == at(0.5)


def test_notifications_resume_individually_after_the_storm_subsides() -> None:
    grouper = Grouper(POLICY, key="slack")
    _flood(grouper, 0, rules=20)
    grouper.flush(at(0.5))
    fire(grouper, 12, 1, rule="quality-drop")
    (note,) = flush_every(grouper, range(12, 14))
    assert (note.rule, note.is_storm_summary, grouper.is_storm) == ("quality-drop", False, False)


def test_resolves_during_a_storm_are_in_the_summary_and_not_sent_again() -> None:
    grouper = Grouper(POLICY, key="slack")
    fired = [e for r in range(20) for e in fire(grouper, 0, 1, rule=f"rule-{r:02d}")]
    grouper.flush(at(0.5))
    resolve(grouper, 1, fired)
    (summary,) = flush_every(grouper, range(1, 10))
    assert summary.is_storm_summary and len(summary.resolved) == 20 and summary.firing == ()
    assert flush_every(grouper, range(10, 30)) == [] and len(grouper) == 0


def test_snapshot_restore_continues_like_the_original() -> None:
    grouper = Grouper(POLICY, key="slack")
    fired = fire(grouper, 0, 3)
    grouper.flush(at(0.5))
    resolve(grouper, 1, fired[:1])
    restored = Grouper.restore(recovered(grouper.snapshot()), POLICY)
    assert flush_every(restored, range(1, 70)) == flush_every(grouper, range(1, 70))


def test_restore_rejects_another_state_version() -> None:
    with pytest.raises(ValueError, match="GrouperState version 2 is not supported"):
        Grouper.restore(replace(Grouper(POLICY).snapshot(), version=2), POLICY)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("group_wait", timedelta(seconds=-1), "group_wait is -1 day, 23:59:59; expected >= 0"),
    ("group_interval", timedelta(0), "group_interval is 0:00:00; expected > 0"),
    ("storm_threshold", 0, "storm_threshold is 0; expected an integer >= 1"),
])
def test_policy_rejects_bad_values_naming_them(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(POLICY, **{field: value})


def test_group_key_quotes_label_values() -> None:
    assert group_key("r", (("provider", 'a"b'),)) == 'r{provider="a\\"b"}'


# Property: whatever the order of fire/resolve events and flushes, each alert's notifications
# alternate new -> resolved, and once everything resolved and flushed nothing is left open.
actions = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["fire", "resolve", "flush"]),
                             st.integers(1, 240)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(actions, st.integers(1, 6))
def test_each_alert_is_announced_then_resolved_once(
        script: list[tuple[int, str, int]], threshold: int) -> None:
    grouper = Grouper(replace(POLICY, storm_threshold=threshold, group_by=("service",)))
    now, notes, is_firing = T0, [], dict.fromkeys(range(6), False)
    for i, action, step_s in script:
        now += step_s * SEC
        base = event(0, labels=series(i), rule=f"rule-{i % 2}")
        if action == "fire" and not is_firing[i]:
            grouper.add(replace(base, at_unix_ns=now, started_at_unix_ns=now), now)
            is_firing[i] = True
        elif action == "resolve" and is_firing[i]:
            grouper.add(replace(base, state="resolved", previous="firing", at_unix_ns=now), now)
            is_firing[i] = False
        notes += grouper.flush(now)
    for i in range(6):
        if is_firing[i]:
            e = event(0, labels=series(i), rule=f"rule-{i % 2}")
            grouper.add(replace(e, state="resolved", previous="firing", at_unix_ns=now), now)
    for k in range(1, 200):
        notes += grouper.flush(now + k * MIN)
    history: dict[str, list[str]] = {}
    for note in notes:
        for fp in note.new:
            history.setdefault(fp, []).append("new")
        for e in note.resolved:
            history.setdefault(e.fingerprint, []).append("resolved")
    for marks in history.values():
        assert marks == ["new", "resolved"] * (len(marks) // 2)
    times = [n.at_unix_ns for n in notes]
    assert times == sorted(times) and len(grouper) == 0
