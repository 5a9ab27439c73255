"""The session tracker's shortcuts (a lower bound of the earliest idle deadline that lets
`close_until` return at once, a one-segment fast path in `touch`) change no result: random
touch / close / snapshot sequences give exactly what the straightforward tracker
(`_ReferenceTracker`, the code before the shortcuts) gives."""

from __future__ import annotations

import struct
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.sessions import (
    ClosedSession,
    SessionsState,
    SessionTouch,
    SessionTracker,
)

MIN_NS = 60 * 10**9

# --- the reference: SessionTracker as it was before the shortcuts ------------------------------

_Segment = tuple[int, int, int, int, int]
_SEGMENT = struct.Struct("<5q")


def _pack(segments: list[_Segment]) -> bytes | tuple[_Segment, ...]:
    try:
        return b"".join([_SEGMENT.pack(*seg) for seg in segments])
    except struct.error:
        return tuple(segments)


def _unpack(packed: bytes | tuple[_Segment, ...]) -> list[_Segment]:
    if isinstance(packed, bytes):
        return list(_SEGMENT.iter_unpack(packed))
    return list(packed)


def _first_last(packed: bytes | tuple[_Segment, ...]) -> int:
    if isinstance(packed, bytes):
        return int.from_bytes(packed[8:16], "little", signed=True)
    return packed[0][1]


class _ReferenceTracker:
    """Every close scans every open session; every touch unpacks and re-sorts."""

    def __init__(self, idle_timeout: timedelta, max_open: int) -> None:
        self._idle_ns = idle_timeout // timedelta(microseconds=1) * 1000
        self._max_open = max_open
        self._open: dict[str, bytes | tuple[_Segment, ...]] = {}
        self._segments = 0
        self._early: list[ClosedSession] = []
        self.closed_early = 0

    def next_deadline_unix_ns(self) -> int | None:
        if self._early:
            return min(session.closed_unix_ns for session in self._early)
        lasts = [seg[1] for packed in self._open.values() for seg in _unpack(packed)]
        return min(lasts) + self._idle_ns if lasts else None

    def touch(self, touch: SessionTouch) -> None:
        merged = (touch.first_unix_ns, touch.last_unix_ns, touch.cost_pusd, touch.priced_calls,
                  touch.calls)
        packed = self._open.pop(touch.session_id, None)
        if packed is None:
            self._segments += 1
            self._open[touch.session_id] = _pack([merged])
            while self._segments > self._max_open:
                self._evict_oldest()
            return
        kept: list[_Segment] = []
        for seg in _unpack(packed):
            if seg[0] - merged[1] < self._idle_ns and merged[0] - seg[1] < self._idle_ns:
                merged = (min(seg[0], merged[0]), max(seg[1], merged[1]), seg[2] + merged[2],
                          seg[3] + merged[3], seg[4] + merged[4])
                self._segments -= 1
            else:
                kept.append(seg)
        kept.append(merged)
        kept.sort()
        self._segments += 1
        self._open[touch.session_id] = _pack(kept)
        while self._segments > self._max_open:
            self._evict_oldest()

    def close_until(self, unix_ns: int) -> list[ClosedSession]:
        closed, self._early = self._early, []
        for session_id in [sid for sid, packed in self._open.items()
                           if _first_last(packed) + self._idle_ns <= unix_ns]:
            still_open: list[_Segment] = []
            for seg in _unpack(self._open.pop(session_id)):
                if seg[1] + self._idle_ns <= unix_ns:
                    closed.append(self._closed(session_id, seg, is_early=False))
                    self._segments -= 1
                else:
                    still_open.append(seg)
            if still_open:
                self._open[session_id] = _pack(still_open)
        closed.sort(key=lambda s: (s.closed_unix_ns, s.session_id, s.first_unix_ns))
        return closed

    def _evict_oldest(self) -> None:
        session_id = next(iter(self._open))
        segs = _unpack(self._open.pop(session_id))
        self._early.append(self._closed(session_id, segs.pop(0), is_early=True))
        self.closed_early += 1
        self._segments -= 1
        if segs:
            self._open = {session_id: _pack(segs), **self._open}

    def _closed(self, session_id: str, seg: _Segment, *, is_early: bool) -> ClosedSession:
        return ClosedSession(session_id, seg[2], seg[3], seg[4], seg[0], seg[1],
                             seg[1] + self._idle_ns, is_early)

    def snapshot(self) -> SessionsState:
        return SessionsState(
            version=1,
            segments=tuple((sid, *seg) for sid, packed in self._open.items()
                           for seg in _unpack(packed)),
            early=tuple((s.session_id, s.first_unix_ns, s.last_unix_ns, s.cost_pusd,
                         s.priced_calls, s.calls) for s in self._early),
            closed_early=self.closed_early,
        )


# --- random operation sequences -----------------------------------------------------------------

HUGE = 2**63 - 5  # two of these in one segment pass int64: the segment is kept as tuples

_touches = st.builds(
    lambda sid, t, width, cost, priced: SessionTouch(sid, t, t + width, cost if priced else 0,
                                                     int(priced), 1 + width % 3),
    st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 300 * MIN_NS),
    st.sampled_from([0, 0, 0, 10**9, 5 * MIN_NS]),
    st.integers(0, 10**10) | st.just(HUGE), st.booleans())
_ops = st.lists(_touches | st.integers(0, 400 * MIN_NS) | st.none(), max_size=80)
"""A touch, a close until that time, or a snapshot-and-restore."""


@settings(max_examples=300, deadline=None)
@given(_ops, st.sampled_from([timedelta(minutes=1), timedelta(minutes=30)]),
       st.sampled_from([1, 2, 3, 1000]))
def test_random_sequences_equal_the_reference_tracker(
        ops: list[SessionTouch | int | None], idle: timedelta,
        max_open: int) -> None:
    """Out-of-order touches, several segments per session, early closes past `max_open`,
    closes at any time (also going back), restores, costs past int64: all as the reference."""
    tracker, reference = SessionTracker(idle, max_open), _ReferenceTracker(idle, max_open)
    for arg in ops:
        if isinstance(arg, SessionTouch):
            tracker.touch(arg)
            reference.touch(arg)
        elif isinstance(arg, int):
            assert tracker.close_until(arg) == reference.close_until(arg)
        else:
            tracker = SessionTracker.restore(tracker.snapshot(), idle, max_open)
        assert tracker.snapshot() == reference.snapshot()
        exact = reference.next_deadline_unix_ns()
        assert tracker.next_deadline_unix_ns() == exact
        bound = tracker.deadline_bound_unix_ns()
        assert (bound is None) == (exact is None)
        assert bound is None or exact is None or bound <= exact
        assert tracker.closed_early == reference.closed_early
    assert tracker.close_until(10**20) == reference.close_until(10**20)
    assert tracker.open_segments == 0


def test_nothing_due_returns_at_once_and_the_bound_follows_touches() -> None:
    """The shortcut itself: no close is missed right after a touch lowers the earliest
    deadline, nor after a close leaves a later one."""
    idle = timedelta(minutes=30)
    tracker = SessionTracker(idle)
    tracker.touch(SessionTouch("a", 100 * MIN_NS, 100 * MIN_NS, 1, 1, 1))
    assert tracker.close_until(129 * MIN_NS) == []
    tracker.touch(SessionTouch("b", 10 * MIN_NS, 10 * MIN_NS, 2, 1, 1))  # an earlier deadline
    [b] = tracker.close_until(129 * MIN_NS)
    assert (b.session_id, b.closed_unix_ns) == ("b", 40 * MIN_NS)
    tracker.touch(SessionTouch("a", 20 * MIN_NS, 20 * MIN_NS, 3, 1, 1))  # a's second segment
    [a_early] = tracker.close_until(50 * MIN_NS)
    assert (a_early.session_id, a_early.last_unix_ns) == ("a", 20 * MIN_NS)
    assert tracker.close_until(129 * MIN_NS) == []
    [a_late] = tracker.close_until(130 * MIN_NS)
    assert (a_late.session_id, a_late.cost_pusd) == ("a", 1)
    assert tracker.next_deadline_unix_ns() is None


_batches = st.lists(st.lists(_touches, min_size=1, max_size=12) | st.integers(0, 400 * MIN_NS)
                    | st.none(), max_size=30)
"""A batch of touches (session ids may repeat in one), a close, or a snapshot-and-restore."""


@settings(max_examples=300, deadline=None)
@given(_batches, st.sampled_from([timedelta(minutes=1), timedelta(minutes=30)]),
       st.sampled_from([1, 2, 3, 1000]), st.booleans())
def test_touch_many_equals_touching_each_in_turn(
        ops: list[list[SessionTouch] | int | None], idle: timedelta, max_open: int,
        as_iterator: bool) -> None:
    """`touch_many` of a batch is the reference's `touch` of each in turn, also when the batch
    evicts sessions midway (the dict it holds is rebuilt), merges several segments, repeats a
    session or passes int64."""
    tracker, reference = SessionTracker(idle, max_open), _ReferenceTracker(idle, max_open)
    for arg in ops:
        if isinstance(arg, list):
            tracker.touch_many(iter(arg) if as_iterator else tuple(arg))
            for touch in arg:
                reference.touch(touch)
        elif isinstance(arg, int):
            assert tracker.close_until(arg) == reference.close_until(arg)
        else:
            tracker = SessionTracker.restore(tracker.snapshot(), idle, max_open)
        assert tracker.snapshot() == reference.snapshot()
        assert tracker.open_segments == len(reference.snapshot().segments)
        exact = reference.next_deadline_unix_ns()
        assert tracker.next_deadline_unix_ns() == exact
        bound = tracker.deadline_bound_unix_ns()
        assert (bound is None) == (exact is None)
        assert bound is None or exact is None or bound <= exact
    assert tracker.close_until(10**20) == reference.close_until(10**20)
    assert tracker.open_segments == 0


def test_touch_many_of_nothing_changes_nothing() -> None:
    tracker = SessionTracker(timedelta(minutes=30))
    tracker.touch(SessionTouch("a", MIN_NS, MIN_NS, 5, 1, 1))
    before = tracker.snapshot()
    tracker.touch_many(())
    assert tracker.snapshot() == before
    assert tracker.deadline_bound_unix_ns() == 31 * MIN_NS
