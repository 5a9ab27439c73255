"""Alert lifecycle: for, keep_firing_for, repeat, resolve, gating, missing data, restarts.

Table tests drive one instance minute by minute with an injected event-time clock: each step is
B (breach), C (clear), G (gated: too few samples), N (no data: a clear without a value) or
. (no evaluation at all).
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.lifecycle import AlertLifecycle, LifecyclePolicy
from rules.records import AlertEvent, Evaluation, Labels

T0 = 1_736_150_400_000_000_000  # 2025-01-06T08:00:00Z
MIN = 60_000_000_000
S = TypeVar("S")
SERIES: Labels = (("model", "gpt-4o"), ("service", "chat"))
OTHER: Labels = (("model", "gpt-4o-mini"), ("service", "chat"))


def evaluation(minute: float, kind: str = "B", *, rule: str = "error-rate-high", tier: int = 1,
               labels: Labels = SERIES) -> Evaluation:
    """The rule checked on the series at T0 + minute, breaching (B), clear (C), gated (G) or
    without data (N)."""
    value = {"B": 0.09, "C": 0.01, "G": 0.5, "N": None}[kind]
    return Evaluation(rule=rule, tier=tier, labels=labels, at_unix_ns=T0 + int(minute * MIN),
                      window_s=300.0, is_breach=kind == "B", value=value, threshold=0.05,
                      samples=3 if kind == "G" else 200, is_gated=kind == "G",
                      exemplar_trace_ids=(f"trace-{minute}",))


def event(minute: float, state: str = "firing", *, rule: str = "error-rate-high", tier: int = 1,
          labels: Labels = SERIES, started: float | None = None, is_repeat: bool = False,
          suppressed_by: tuple[str, ...] = ()) -> AlertEvent:
    """An AlertEvent as the lifecycle would emit it (for the grouping and inhibition tests)."""
    ev = evaluation(minute, "B" if state == "firing" else "C", rule=rule, tier=tier,
                    labels=labels)
    return AlertEvent(
        fingerprint=ev.fingerprint, rule=rule, tier=tier, labels=labels,
        state="firing" if state == "firing" else "resolved",
        previous="pending" if state == "firing" else "firing", at_unix_ns=ev.at_unix_ns,
        started_at_unix_ns=T0 + int((minute if started is None else started) * MIN),
        evaluation=ev, is_repeat=is_repeat, suppressed_by=suppressed_by)


def recovered(state: S) -> S:
    """State as Bytewax recovery would give it back: pickled and loaded again."""
    loaded: S = pickle.loads(pickle.dumps(state))  # noqa: S301  # our own state, as Bytewax
    return loaded


def run(steps: str, policy: LifecyclePolicy, lifecycle: AlertLifecycle | None = None,
        start: int = 0) -> tuple[AlertLifecycle, list[AlertEvent]]:
    """Feed one evaluation per minute (and a tick after each minute); all events, in order."""
    lifecycle = lifecycle if lifecycle is not None else AlertLifecycle()
    events: list[AlertEvent] = []
    for minute, kind in enumerate(steps, start=start):
        if kind != ".":
            events += lifecycle.observe(evaluation(minute, kind), policy)
        events += lifecycle.tick(T0 + minute * MIN)
    return lifecycle, events


def summary(events: list[AlertEvent]) -> list[tuple[int, str]]:
    """(minute, kind) per event: firing, repeat or resolved."""
    return [((e.at_unix_ns - T0) // MIN, "repeat" if e.is_repeat else e.state) for e in events]


FOR_5M = LifecyclePolicy(for_=timedelta(minutes=5))
KEEP_5M = LifecyclePolicy(keep_firing_for=timedelta(minutes=5))


@pytest.mark.parametrize(("steps", "policy", "expected"), [
    pytest.param("BBBBBBB", FOR_5M, [(5, "firing")], id="fires_exactly_when_for_elapsed"),
    pytest.param("BBBBC", FOR_5M, [], id="pending_then_clear_never_fires"),
    pytest.param("BBBBCBBBBBB", FOR_5M, [(10, "firing")], id="clear_while_pending_restarts_onset"),
    pytest.param("B", LifecyclePolicy(), [(0, "firing")], id="for_zero_fires_on_first_breach"),
    pytest.param("BC", LifecyclePolicy(), [(0, "firing"), (1, "resolved")],
                 id="keep_firing_for_zero_resolves_on_first_clear"),
    pytest.param("BCCCCCCCCC", LifecyclePolicy(), [(0, "firing"), (1, "resolved")],
                 id="resolve_is_emitted_exactly_once"),
    pytest.param("BBB.B.BB", FOR_5M, [(6, "firing")], id="missing_minutes_do_not_reset_pending"),
])
def test_for_and_resolve_table(steps: str, policy: LifecyclePolicy,
                               expected: list[tuple[int, str]]) -> None:
    assert summary(run(steps, policy)[1]) == expected


def test_pending_alert_cleared_leaves_no_event_and_state_inactive() -> None:
    lifecycle, events = run("BBBC", FOR_5M)
    assert events == []
    assert lifecycle.state_of(evaluation(0).fingerprint) == "inactive"


def test_firing_event_carries_onset_previous_state_and_causing_evaluation() -> None:
    _, events = run("BBBBBB", FOR_5M)
    (fired,) = events
    assert (fired.state, fired.previous) == ("firing", "pending")
    assert fired.started_at_unix_ns == T0
    assert fired.evaluation == evaluation(5, "B")
    assert fired.fingerprint == evaluation(0).fingerprint


def test_flapping_within_keep_firing_for_fires_once_and_resolves_once_after_long_clear() -> None:
    flapping = "BC" * 15  # alternating every minute for 30 minutes
    _, events = run(flapping + "CCCCCC", KEEP_5M)
    # The last breach is at minute 28; clear from 29 on, so keep_firing_for ends at 34.
    assert summary(events) == [(0, "firing"), (34, "resolved")]


def test_breach_during_keep_firing_for_cancels_the_countdown_without_an_event() -> None:
    _, events = run("BCCCCBCCCC", KEEP_5M)
    assert summary(events) == [(0, "firing")]


def test_repeat_events_at_exact_multiples_of_repeat_interval() -> None:
    policy = LifecyclePolicy(repeat_interval=timedelta(minutes=10))
    _, events = run("B" * 36, policy)
    assert summary(events) == [(0, "firing"), (10, "repeat"), (20, "repeat"), (30, "repeat")]
    assert all(e.state == e.previous == "firing" for e in events[1:])


def test_repeat_after_a_gap_sends_one_reminder_and_stays_on_the_grid() -> None:
    policy = LifecyclePolicy(repeat_interval=timedelta(minutes=10),
                             resolve_timeout=timedelta(hours=1))
    lifecycle = AlertLifecycle()
    events = lifecycle.observe(evaluation(0), policy)
    events += lifecycle.observe(evaluation(25), policy)
    events += lifecycle.observe(evaluation(29), policy)
    events += lifecycle.observe(evaluation(30), policy)
    assert summary(events) == [(0, "firing"), (25, "repeat"), (30, "repeat")]


def test_tick_sends_a_due_repeat_with_the_latest_evaluation() -> None:
    policy = LifecyclePolicy(repeat_interval=timedelta(minutes=10))
    lifecycle, _ = run("BBBBBBBBB", policy)
    (reminder,) = lifecycle.tick(T0 + 10 * MIN)
    assert reminder.is_repeat and reminder.at_unix_ns == T0 + 10 * MIN
    assert reminder.evaluation == evaluation(8, "B")


@pytest.mark.parametrize(("steps", "expected"), [
    pytest.param("GGGGGGGG", [], id="gated_cannot_open_an_incident"),
    pytest.param("NNNNNNNN", [], id="no_data_cannot_open_an_incident"),
    pytest.param("BGGGGGGB", [(7, "firing")], id="gated_does_not_fire_a_pending_alert"),
    pytest.param("BGGGGGGC", [], id="gated_does_not_interrupt_pending"),
])
def test_gated_evaluations_while_pending(steps: str, expected: list[tuple[int, str]]) -> None:
    assert summary(run(steps, FOR_5M)[1]) == expected


@pytest.mark.parametrize("gap", ["G", "N"])
def test_gated_or_no_data_evaluations_do_not_resolve_a_firing_alert(gap: str) -> None:
    lifecycle, events = run("B" + gap * 10, KEEP_5M)
    assert summary(events) == [(0, "firing")]
    assert lifecycle.state_of(evaluation(0).fingerprint) == "firing"


def test_gated_evaluation_neither_extends_nor_cancels_the_keep_firing_for_countdown() -> None:
    _, events = run("BCGGGGC", KEEP_5M)
    assert summary(events) == [(0, "firing"), (6, "resolved")]


def test_missing_data_resolves_after_resolve_timeout_with_the_reason() -> None:
    policy = LifecyclePolicy(resolve_timeout=timedelta(minutes=15))
    lifecycle = AlertLifecycle()
    assert summary(lifecycle.observe(evaluation(0), policy)) == [(0, "firing")]
    assert lifecycle.tick(T0 + 14 * MIN) == []
    (resolved,) = lifecycle.tick(T0 + 15 * MIN)
    assert (resolved.state, resolved.previous) == ("resolved", "firing")
    assert resolved.evaluation.value is None and not resolved.evaluation.is_breach
    assert "no decisive evaluation since 2025-01-06T08:00:00+00:00" in resolved.evaluation.detail
    assert lifecycle.tick(T0 + 30 * MIN) == []


def test_only_gated_windows_for_resolve_timeout_resolve_as_missing_data() -> None:
    policy = LifecyclePolicy(resolve_timeout=timedelta(minutes=15))
    _, events = run("B" + "G" * 20, policy)
    assert summary(events) == [(0, "firing"), (15, "resolved")]
    assert "only had gated windows" in events[1].evaluation.detail


def test_tick_resolves_when_evaluations_stop_after_the_condition_cleared() -> None:
    _, events = run("BC.......", KEEP_5M)
    assert summary(events) == [(0, "firing"), (6, "resolved")]
    assert events[1].evaluation.detail.startswith("resolved: clear since")


def test_tick_drops_a_pending_alert_without_data_silently() -> None:
    lifecycle, events = run("BB" + "." * 20, LifecyclePolicy(for_=timedelta(minutes=5)))
    assert events == []
    assert lifecycle.state_of(evaluation(0).fingerprint) == "inactive"


def test_stale_evaluation_is_ignored_and_counted() -> None:
    lifecycle, _ = run("BBB", FOR_5M)
    assert lifecycle.observe(evaluation(1, "C"), FOR_5M) == []
    assert lifecycle.stale == 1
    assert lifecycle.state_of(evaluation(0).fingerprint) == "pending"


def test_instances_are_kept_per_fingerprint() -> None:
    lifecycle = AlertLifecycle()
    policy = LifecyclePolicy()
    events = lifecycle.observe(evaluation(0), policy)
    events += lifecycle.observe(evaluation(0, labels=OTHER), policy)
    events += lifecycle.observe(evaluation(1, "C"), policy)
    assert [(e.labels, e.state) for e in events] == [
        (SERIES, "firing"), (OTHER, "firing"), (SERIES, "resolved")]


def test_ended_instances_are_forgotten_after_retain_so_state_stays_bounded() -> None:
    lifecycle = AlertLifecycle(retain=timedelta(minutes=30))
    policy = LifecyclePolicy()
    for i in range(100):
        labels = (("service", f"svc-{i}"),)
        lifecycle.observe(evaluation(0, labels=labels), policy)
        lifecycle.observe(evaluation(1, "C", labels=labels), policy)
    assert len(lifecycle) == 100
    lifecycle.tick(T0 + 30 * MIN)
    assert len(lifecycle) == 100
    lifecycle.tick(T0 + 31 * MIN)
    assert len(lifecycle) == 0


def test_snapshot_restore_mid_firing_sends_no_second_firing_event() -> None:
    lifecycle, before = run("BBBBBBBB", FOR_5M)
    restored = AlertLifecycle.restore(recovered(lifecycle.snapshot()))
    _, after = run("BBBBBBBB", FOR_5M, restored, start=8)
    assert summary(before) == [(5, "firing")]
    assert after == []


def test_snapshot_restore_still_sends_the_resolve_pending_at_the_snapshot() -> None:
    lifecycle, before = run("BCC", KEEP_5M)
    restored = AlertLifecycle.restore(recovered(lifecycle.snapshot()))
    _, after = run("CCCCC", KEEP_5M, restored, start=3)
    assert summary(before) == [(0, "firing")]
    assert summary(after) == [(6, "resolved")]


def test_snapshot_restore_still_resolves_by_tick_when_no_evaluations_come_back() -> None:
    lifecycle, _ = run("BC", KEEP_5M)
    restored = AlertLifecycle.restore(recovered(lifecycle.snapshot()))
    assert summary(restored.tick(T0 + 6 * MIN)) == [(6, "resolved")]


def test_restore_rejects_another_state_version() -> None:
    state = replace(AlertLifecycle().snapshot(), version=99)
    with pytest.raises(ValueError, match="LifecycleState version 99 is not supported"):
        AlertLifecycle.restore(state)


@pytest.mark.parametrize("field", ["for_", "keep_firing_for", "repeat_interval"])
def test_policy_rejects_a_negative_duration_naming_it(field: str) -> None:
    with pytest.raises(ValueError, match=f"LifecyclePolicy.{field} is -1 day"):
        LifecyclePolicy(**{field: timedelta(seconds=-1)})


def test_policy_rejects_a_zero_resolve_timeout() -> None:
    with pytest.raises(ValueError, match="resolve_timeout is 0:00:00; expected a duration > 0"):
        LifecyclePolicy(resolve_timeout=timedelta(0))


def test_next_tick_at_is_the_earliest_time_based_transition() -> None:
    lifecycle, _ = run("BC", LifecyclePolicy(keep_firing_for=timedelta(minutes=5),
                                             repeat_interval=timedelta(minutes=30)))
    assert lifecycle.next_tick_at_unix_ns() == T0 + 6 * MIN
    assert AlertLifecycle().next_tick_at_unix_ns() is None


# Property tests over arbitrary breach/clear/gated/no-data sequences.
steps_strategy = st.text(alphabet="BCGN.", max_size=60)
policies = st.builds(
    LifecyclePolicy,
    for_=st.integers(0, 5).map(lambda m: timedelta(minutes=m)),
    keep_firing_for=st.integers(0, 5).map(lambda m: timedelta(minutes=m)),
    repeat_interval=st.sampled_from([timedelta(0), timedelta(minutes=7)]),
    resolve_timeout=st.integers(1, 20).map(lambda m: timedelta(minutes=m)))


@settings(max_examples=300, deadline=None)
@given(steps_strategy, policies)
def test_every_incident_fires_at_most_once_and_resolves_exactly_once(
        steps: str, policy: LifecyclePolicy) -> None:
    tail = "C" * 7  # longer than any keep_firing_for: the condition stays clear long enough
    lifecycle, events = run(steps + tail, policy)
    times = [e.at_unix_ns for e in events]
    assert times == sorted(times)
    transitions = [e.state for e in events if not e.is_repeat]
    assert transitions == ["firing", "resolved"] * (len(transitions) // 2)
    onsets = [e.started_at_unix_ns for e in events if e.state == "firing" and not e.is_repeat]
    assert len(onsets) == len(set(onsets))
    assert lifecycle.state_of(evaluation(0).fingerprint) in ("inactive", "resolved")


@settings(max_examples=200, deadline=None)
@given(steps_strategy, steps_strategy, policies)
def test_restore_continues_exactly_like_the_original(
        first: str, second: str, policy: LifecyclePolicy) -> None:
    original, head = run(first, policy)
    restored = AlertLifecycle.restore(recovered(original.snapshot()))
    _, expected = run(second, policy, original, start=len(first))
    _, actual = run(second, policy, restored, start=len(first))
    assert actual == expected
    assert [e.state for e in head + actual if not e.is_repeat].count("firing") <= \
        (first + second).count("B")


def test_a_replayed_evaluation_causes_no_second_event() -> None:
    lifecycle = AlertLifecycle()
    policy = LifecyclePolicy()
    events = [e for ev in [evaluation(0), evaluation(0), evaluation(1, "C"), evaluation(1, "C")]
              for e in lifecycle.observe(ev, policy)]
    assert summary(events) == [(0, "firing"), (1, "resolved")]
