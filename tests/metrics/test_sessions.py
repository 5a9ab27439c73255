"""Session cost: idle-timeout sessions equal a sort-and-split reference in any arrival order."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.sessions import ClosedSession, SessionTouch, SessionTracker

IDLE = timedelta(minutes=30)
IDLE_NS = 30 * 60 * 10**9
MIN_NS = 60 * 10**9

touches = st.lists(
    st.builds(lambda sid, t, cost, priced: SessionTouch(sid, t, t, cost if priced else 0,
                                                        int(priced), 1),
              st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 600 * MIN_NS),
              st.integers(0, 10**10), st.booleans()),
    max_size=60)


def _reference(items: list[SessionTouch]) -> list[tuple[str, int, int, int, int, int]]:
    """Sort each session's spans, split where the gap reaches the idle timeout."""
    out = []
    for sid in sorted({t.session_id for t in items}):
        mine = sorted((t for t in items if t.session_id == sid), key=lambda t: t.first_unix_ns)
        run: list[SessionTouch] = []
        for t in [*mine, None]:
            if run and (t is None or t.first_unix_ns - run[-1].last_unix_ns >= IDLE_NS):
                out.append((sid, run[0].first_unix_ns, max(r.last_unix_ns for r in run),
                            sum(r.cost_pusd for r in run), sum(r.priced_calls for r in run),
                            len(run)))
                run = []
            if t is not None:
                run.append(t)
    return sorted(out)


def _as_tuple(s: ClosedSession) -> tuple[str, int, int, int, int, int]:
    return (s.session_id, s.first_unix_ns, s.last_unix_ns, s.cost_pusd, s.priced_calls,
            s.calls)


@settings(max_examples=200)
@given(touches, st.randoms(use_true_random=False))
def test_sessions_equal_the_reference_in_any_arrival_order(items: list[SessionTouch],
                                                           rnd: random.Random) -> None:
    arrival = items[:]
    rnd.shuffle(arrival)
    tracker = SessionTracker(IDLE, max_open=1000)
    closed: list[ClosedSession] = []
    for index, touch in enumerate(arrival):
        tracker.touch(touch)
        later = [t.first_unix_ns for t in arrival[index + 1:]]
        if later and rnd.random() < 0.3:  # a watermark no later record is behind
            closed += tracker.close_until(min(later))
    closed += tracker.close_until(10**20)
    assert sorted(map(_as_tuple, closed)) == _reference(items)
    assert all(s.closed_unix_ns == s.last_unix_ns + IDLE_NS and not s.is_early for s in closed)


def test_a_session_closes_at_its_idle_deadline() -> None:
    tracker = SessionTracker(IDLE)
    tracker.touch(SessionTouch("a", 0, 0, 5, 1, 1))
    tracker.touch(SessionTouch("a", 10 * MIN_NS, 10 * MIN_NS, 7, 1, 1))
    assert tracker.close_until(40 * MIN_NS - 1) == []
    [session] = tracker.close_until(40 * MIN_NS)
    assert (session.cost_pusd, session.calls, session.closed_unix_ns) == (12, 2, 40 * MIN_NS)


def test_past_the_cap_the_least_recently_touched_session_closes_early() -> None:
    tracker = SessionTracker(IDLE, max_open=2)
    for sid in ("a", "b", "c"):
        tracker.touch(SessionTouch(sid, 0, 0, 1, 1, 1))
    assert tracker.open_segments == 2 and tracker.closed_early == 1
    [early] = tracker.close_until(0)
    assert early.session_id == "a" and early.is_early


@given(touches, st.integers(0, 60))
def test_snapshot_restore_continues_exactly(items: list[SessionTouch], cut: int) -> None:
    original = SessionTracker(IDLE, max_open=3)
    for touch in items[:cut]:
        original.touch(touch)
    restored = SessionTracker.restore(original.snapshot(), IDLE, max_open=3)
    for touch in items[cut:]:
        original.touch(touch)
        restored.touch(touch)
    assert original.close_until(10**20) == restored.close_until(10**20)
    assert original.snapshot() == restored.snapshot()


def test_costs_beyond_int64_stay_exact_and_restore() -> None:
    # Segments are packed as int64s; a larger total (over ~$9M in pico-USD) must not wrap.
    huge = 2**63 - 10
    tracker = SessionTracker(IDLE)
    tracker.touch(SessionTouch("a", 0, 0, huge, 1, 1))
    tracker.touch(SessionTouch("a", MIN_NS, MIN_NS, 100, 1, 1))  # now past int64
    tracker.touch(SessionTouch("b", 0, 0, 3, 1, 1))
    restored = SessionTracker.restore(tracker.snapshot(), IDLE)
    for t in (tracker, restored):
        t.touch(SessionTouch("a", 2 * MIN_NS, 2 * MIN_NS, 1, 1, 1))
    want = [("b", 0, 0, 3, 1, 1), ("a", 0, 2 * MIN_NS, huge + 101, 3, 3)]
    assert [_as_tuple(s) for s in tracker.close_until(10**20)] == want
    assert [_as_tuple(s) for s in restored.close_until(10**20)] == want


def test_deadlines_and_early_closes_read_packed_segments() -> None:
    tracker = SessionTracker(IDLE, max_open=2)
    tracker.touch(SessionTouch("a", 5 * MIN_NS, 5 * MIN_NS, 1, 1, 1))
    tracker.touch(SessionTouch("a", 100 * MIN_NS, 100 * MIN_NS, 2, 1, 1))  # a second segment
    assert tracker.next_deadline_unix_ns() == 5 * MIN_NS + IDLE_NS
    tracker.touch(SessionTouch("b", 50 * MIN_NS, 50 * MIN_NS, 4, 0, 1))  # evicts a's first
    assert tracker.open_segments == 2 and tracker.closed_early == 1
    [early] = tracker.close_until(0)
    assert _as_tuple(early) == ("a", 5 * MIN_NS, 5 * MIN_NS, 1, 1, 1) and early.is_early
    assert tracker.next_deadline_unix_ns() == 50 * MIN_NS + IDLE_NS
    assert [_as_tuple(s) for s in tracker.close_until(10**20)] == [
        ("b", 50 * MIN_NS, 50 * MIN_NS, 4, 0, 1), ("a", 100 * MIN_NS, 100 * MIN_NS, 2, 1, 1)]
