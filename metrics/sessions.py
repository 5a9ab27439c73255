"""Session cost for the window stage: total cost per session, closed by an idle timeout.

In: `SessionTouch`es (one span, or one batch's spans of a session in a minute) with event
times. Out: `ClosedSession`s, each landing in the bucket of the minute its idle deadline falls
in; `cost_per_session` is then the mean over sessions closed in a window (and its max).

A session is a maximal run of one session id's spans with gaps < `idle_timeout` (event time).
Segments merge whenever their gap is below the timeout, so arrival order does not matter: the
result equals sorting every folded span first. Only sessions past `max_open` are approximated:
the least recently touched one is closed early (flagged and counted) to bound memory.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from ingest.span import LLMSpan, fast_builder
from metrics.bucket import PICO_USD

STATE_VERSION = 1

Segment = tuple[int, int, int, int, int]
"""(first, last, cost in pico-USD, priced calls, calls) of one run of a session's spans."""
_SEGMENT = struct.Struct("<5q")
Packed = bytes | tuple[Segment, ...]
"""A session's segments, sorted: `_SEGMENT`s back to back, or (a value beyond int64) tuples."""


def _pack(segments: list[Segment]) -> Packed:
    # 40 bytes a segment instead of a list of five int objects (~250 B): a busy series keeps
    # over a hundred open sessions, which were its largest part after the rollup rings.
    try:
        return b"".join([_SEGMENT.pack(*seg) for seg in segments])
    except struct.error:  # a session costing over ~$9M in pico-USD: kept exactly, as tuples
        return tuple(segments)


def _unpack(packed: Packed) -> list[Segment]:
    if isinstance(packed, bytes):
        return list(_SEGMENT.iter_unpack(packed))
    return list(packed)


_LAST = struct.Struct("<q")
_NOTHING_OPEN = 2**127
"""`SessionTracker._bound` with no session open: above every event time."""


def _first_last(packed: Packed) -> int:
    """Last event time of the first (earliest) segment."""
    if isinstance(packed, bytes):
        return int(_LAST.unpack_from(packed, 8)[0])
    return packed[0][1]


@dataclass(frozen=True, slots=True)
class SessionTouch:
    """Activity of one session: its spans between two event times, their priced cost."""

    session_id: str
    first_unix_ns: int
    last_unix_ns: int
    cost_pusd: int = 0
    priced_calls: int = 0
    calls: int = 0
    """Model calls (llm + embedding spans)."""

    def __reduce__(self) -> tuple[type[SessionTouch], tuple[str, int, int, int, int, int]]:
        return (SessionTouch, (self.session_id, self.first_unix_ns, self.last_unix_ns,
                               self.cost_pusd, self.priced_calls, self.calls))


@dataclass(frozen=True, slots=True)
class ClosedSession:
    """A session that ended: `closed_unix_ns` is its last span plus the idle timeout."""

    session_id: str
    cost_pusd: int
    priced_calls: int
    calls: int
    first_unix_ns: int
    last_unix_ns: int
    closed_unix_ns: int
    is_early: bool = False
    """Closed before its deadline because `max_open` sessions were open."""

    @property
    def cost_usd(self) -> float:
        return self.cost_pusd / PICO_USD


@dataclass(frozen=True, slots=True)
class SessionsState:
    """Plain-data state of a `SessionTracker`; segments in least-recently-touched order."""

    version: int
    segments: tuple[tuple[str, int, int, int, int, int], ...]
    early: tuple[tuple[str, int, int, int, int, int], ...]
    closed_early: int


new_touch: Callable[[str, int, int, int, int, int], SessionTouch] = fast_builder(SessionTouch)
"""`SessionTouch` from all six fields, without the frozen dataclass' `__init__` (pre-aggregation
makes one per span with a session and per join)."""


def touch_of(span: LLMSpan) -> SessionTouch | None:
    """The session activity of one span, None when it carries no session id."""
    session_id = span.context.session_id
    if not session_id:
        return None
    is_call = span.kind in ("llm", "embedding")
    cost = span.cost_usd
    if not is_call or cost is None or not math.isfinite(cost):
        return new_touch(session_id, span.end_unix_ns, span.end_unix_ns, 0, 0, int(is_call))
    return new_touch(session_id, span.end_unix_ns, span.end_unix_ns, round(cost * PICO_USD), 1, 1)


class SessionTracker:
    """Open sessions of one series (see the module docstring)."""

    __slots__ = ("_bound", "_closed_early", "_early", "_idle_ns", "_max_open", "_open",
                 "_segments")

    def __init__(self, idle_timeout: timedelta, max_open: int = 1000) -> None:
        if idle_timeout < timedelta(minutes=1):
            raise ValueError(f"session idle_timeout must be >= 1 minute, got {idle_timeout}")
        if max_open < 1:
            raise ValueError(f"max_open_sessions must be >= 1, got {max_open}")
        self._idle_ns = idle_timeout // timedelta(microseconds=1) * 1000
        self._max_open = max_open
        # session id -> its packed segments, sorted; least recently touched session first
        self._open: dict[str, Packed] = {}
        self._bound = _NOTHING_OPEN
        """At most the lowest `_first_last` of an open session: `close_until` scans the
        sessions only once one may be due (lowered by touches, made exact by each scan)."""
        self._segments = 0
        self._early: list[ClosedSession] = []
        self._closed_early = 0

    @property
    def open_segments(self) -> int:
        return self._segments

    @property
    def closed_early(self) -> int:
        """Sessions closed before their deadline because of `max_open`, ever."""
        return self._closed_early

    def next_deadline_unix_ns(self) -> int | None:
        """The earliest idle deadline of an open session."""
        if self._early:
            return min(session.closed_unix_ns for session in self._early)
        lasts = [seg[1] for packed in self._open.values() for seg in _unpack(packed)]
        return min(lasts) + self._idle_ns if lasts else None

    def deadline_bound_unix_ns(self) -> int | None:
        """A lower bound of `next_deadline_unix_ns()`, None when it is None, without scanning
        the open sessions (exact after a `close_until` that scanned them): for skipping silent
        minutes, where a guess too early costs one more empty minute, whose close scans."""
        if self._early:
            return min(session.closed_unix_ns for session in self._early)
        return self._bound + self._idle_ns if self._open else None

    def touch(self, touch: SessionTouch) -> None:
        """Fold activity in, merging every segment it comes within `idle_timeout` of."""
        self.touch_many((touch,))

    def touch_many(self, touches: Iterable[SessionTouch]) -> None:
        """`touch` each of `touches` in turn: the same state, in one call (a partial carries
        ~25 touches on the bench traffic, most of sessions not open yet). The counters and the
        bound live in locals meanwhile, fields are read as attributes (cheaper than one
        `attrgetter` tuple), and only a touch that reaches an open session unpacks it."""
        idle, max_open, pack = self._idle_ns, self._max_open, _SEGMENT.pack
        opened = self._open
        pop = opened.pop
        bound, segments = self._bound, self._segments
        try:
            for touch in touches:
                session_id = touch.session_id
                last = touch.last_unix_ns
                packed = pop(session_id, None)
                if packed is None:  # a session not open yet (most touches)
                    segments += 1
                    if last < bound:  # noqa: PLR1730 - cheaper than min() per touch
                        bound = last
                    try:
                        opened[session_id] = pack(touch.first_unix_ns, last, touch.cost_pusd,
                                                  touch.priced_calls, touch.calls)
                    except struct.error:  # past int64, as `_pack` keeps it
                        opened[session_id] = ((touch.first_unix_ns, last, touch.cost_pusd,
                                               touch.priced_calls, touch.calls),)
                else:
                    first = touch.first_unix_ns
                    if len(packed) == _SEGMENT.size and isinstance(packed, bytes):
                        seg = _SEGMENT.unpack(packed)
                    else:
                        seg = None
                    if seg is not None and seg[0] - last < idle and first - seg[1] < idle:
                        # One segment (the usual open session) that the touch reaches: merged
                        # in place; its last event time only grows, so the bound holds.
                        merged = (seg[0] if seg[0] < first else first,
                                  seg[1] if seg[1] > last else last, seg[2] + touch.cost_pusd,
                                  seg[3] + touch.priced_calls, seg[4] + touch.calls)
                        try:
                            opened[session_id] = pack(*merged)
                        except struct.error:  # past int64, as `_pack` keeps it
                            opened[session_id] = (merged,)
                    else:
                        kept, merges = self._merged(packed, (
                            first, last, touch.cost_pusd, touch.priced_calls, touch.calls))
                        segments += 1 - merges
                        opened[session_id] = _pack(kept)  # re-inserted: the most recent
                        bound = min(bound, kept[0][1])
                if segments > max_open:
                    self._bound, self._segments = bound, segments
                    while self._segments > max_open:
                        self._evict_oldest()
                    opened = self._open  # eviction may rebuild the dict
                    pop = opened.pop
                    bound, segments = self._bound, self._segments
        finally:
            self._bound, self._segments = bound, segments

    def _merged(self, packed: Packed, merged: Segment) -> tuple[list[Segment], int]:
        """A session's segments with `merged` folded in (joining every segment it comes within
        `idle_timeout` of), sorted, and how many open segments it joined."""
        kept: list[Segment] = []
        merges = 0
        for seg in _unpack(packed):
            if seg[0] - merged[1] < self._idle_ns and merged[0] - seg[1] < self._idle_ns:
                merged = (min(seg[0], merged[0]), max(seg[1], merged[1]), seg[2] + merged[2],
                          seg[3] + merged[3], seg[4] + merged[4])
                merges += 1
            else:
                kept.append(seg)
        kept.append(merged)
        kept.sort()
        return kept, merges

    def close_until(self, unix_ns: int) -> list[ClosedSession]:
        """Sessions whose deadline (last span + idle timeout) is <= `unix_ns`, and sessions
        closed early since the last call; by deadline, then id."""
        closed, self._early = self._early, []
        limit = unix_ns - self._idle_ns
        if self._bound <= limit:  # a session may be due: scan them all, making the bound exact
            bound = _NOTHING_OPEN
            due: list[str] = []
            for sid, packed in self._open.items():
                first_last = _first_last(packed)
                if first_last <= limit:
                    due.append(sid)
                elif first_last < bound:
                    bound = first_last
            for session_id in due:
                still_open: list[Segment] = []
                for seg in _unpack(self._open.pop(session_id)):
                    if seg[1] <= limit:
                        closed.append(self._closed(session_id, seg, is_early=False))
                        self._segments -= 1
                    else:
                        still_open.append(seg)
                if still_open:
                    self._open[session_id] = _pack(still_open)
                    bound = min(bound, still_open[0][1])
            self._bound = bound
        closed.sort(key=lambda s: (s.closed_unix_ns, s.session_id, s.first_unix_ns))
        return closed

    def _evict_oldest(self) -> None:
        session_id = next(iter(self._open))
        segs = _unpack(self._open.pop(session_id))
        self._early.append(self._closed(session_id, segs.pop(0), is_early=True))
        self._closed_early += 1
        self._segments -= 1
        if segs:
            self._open = {session_id: _pack(segs), **self._open}
            self._bound = min(self._bound, segs[0][1])

    def _closed(self, session_id: str, seg: Segment, *, is_early: bool) -> ClosedSession:
        return ClosedSession(session_id, seg[2], seg[3], seg[4], seg[0], seg[1],
                             seg[1] + self._idle_ns, is_early)

    def snapshot(self) -> SessionsState:
        return SessionsState(
            version=STATE_VERSION,
            segments=tuple((sid, *seg) for sid, packed in self._open.items()
                           for seg in _unpack(packed)),
            early=tuple((s.session_id, s.first_unix_ns, s.last_unix_ns, s.cost_pusd,
                         s.priced_calls, s.calls) for s in self._early),
            closed_early=self._closed_early,
        )

    @classmethod
    def restore(cls, state: SessionsState, idle_timeout: timedelta,
                max_open: int = 1000) -> SessionTracker:
        if state.version != STATE_VERSION:
            raise ValueError(f"SessionsState version {state.version} is not supported")
        tracker = cls(idle_timeout, max_open)
        segments: dict[str, list[Segment]] = {}
        for sid, first, last, cost, priced, calls in state.segments:
            segments.setdefault(sid, []).append((first, last, cost, priced, calls))
            tracker._segments += 1
        tracker._open = {sid: _pack(segs) for sid, segs in segments.items()}
        tracker._bound = min([segs[0][1] for segs in segments.values()], default=_NOTHING_OPEN)
        tracker._early = [ClosedSession(sid, cost, priced, calls, first, last,
                                        last + tracker._idle_ns, True)
                          for sid, first, last, cost, priced, calls in state.early]
        tracker._closed_early = state.closed_early
        return tracker
