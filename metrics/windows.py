"""Event-time windows of one series: open minute buckets, closing, rollups and views.

In: records (or pre-aggregated partial buckets) of one series, and the watermark. Out:
`ClosedMinute`s in time order, explicit empty ones while the series is live, and `view(over,
end)` buckets over the last minutes (minute ring), hours (hourly ring) or days (daily ring).

Memory is bounded whatever the traffic: open minutes exist only between the closed edge and the
newest record, closed minutes, hours and days sit in fixed rings as packed blobs, and sessions
are capped. Rollups happen a per-series offset after the hour or day ends (`rollup_spread`),
so a shard with many series does not do all of them at once; until then views use the finer
ring, which holds enough to cover the gap.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

from ingest.span import EvalResult, LLMSpan
from metrics.bucket import MINUTE_NS, Bucket, SpanPlan, event_unix_ns, minute_of
from metrics.bucket_state import COUNTERS, BucketState, Fields, unpack_fields
from metrics.bucket_state import STATE_VERSION as BUCKET_STATE_VERSION
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.partial import Planned, fold_planned
from metrics.ring import CompactRing, RingState
from metrics.series import SeriesKey
from metrics.sessions import SessionsState, SessionTouch, SessionTracker, touch_of
from metrics.sketch import QuantileSketch
from metrics.watermark import Lateness, lateness

STATE_VERSION = 1
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS


_ZERO = timedelta(0)


@lru_cache(maxsize=256)
def _ns(duration: timedelta) -> int:
    # Memoised: called with a few durations (the config's, rules' windows) for every series
    # each minute, and `timedelta` arithmetic costs ~0.8 us a call.
    return duration // timedelta(microseconds=1) * 1000


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Sizes and timeouts of series windows. Defaults: views up to 1 h at minute resolution,
    up to 1 d at hour resolution, up to 7 d at day resolution."""

    minute_slots: int = 72
    """Closed minutes kept; >= 60 + rollup_spread in minutes."""
    hourly_slots: int = 26
    """Rolled-up hours kept: 24 serve views up to a day, 2 more cover the staggered daily
    rollup. Detectors keep their own long baselines, so more only costs memory (~1 KB each
    for a busy series)."""
    daily_slots: int = 8
    rollup_spread: timedelta = timedelta(minutes=12)
    """Hour and day rollups of a series run up to this long after the boundary."""
    retire_after: timedelta = timedelta(hours=6)
    """After this long without records (event time) a series stops emitting empty minutes and
    its state is dropped; must exceed `session_idle_timeout`."""
    session_idle_timeout: timedelta = timedelta(minutes=30)
    max_open_sessions: int = 1000
    """Per series; past it the least recently touched session closes early (counted)."""
    categories: EvalCategories = field(default=DEFAULT_CATEGORIES)

    def __post_init__(self) -> None:
        spread_minutes = -(-self.rollup_spread // timedelta(minutes=1))
        checks = (
            ("rollup_spread", self.rollup_spread, timedelta(0) <= self.rollup_spread
             <= timedelta(hours=1), "0..1h"),
            ("minute_slots", self.minute_slots, self.minute_slots >= 60 + spread_minutes,
             f">= {60 + spread_minutes} (60 + rollup_spread in minutes)"),
            ("hourly_slots", self.hourly_slots, self.hourly_slots >= 26, ">= 26"),
            ("daily_slots", self.daily_slots, self.daily_slots >= 1, ">= 1"),
            ("session_idle_timeout", self.session_idle_timeout,
             self.session_idle_timeout >= timedelta(minutes=1), ">= 1 minute"),
            ("retire_after", self.retire_after,
             self.retire_after > self.session_idle_timeout, "> session_idle_timeout"),
            ("max_open_sessions", self.max_open_sessions, self.max_open_sessions >= 1, ">= 1"),
        )
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"WindowConfig.{name} = {value!r} is out of range; "
                                 f"expected {allowed}")


@dataclass(frozen=True, slots=True)
class ClosedMinute:
    """One closed event-time minute of one series. `bucket` is empty (not missing) for a live
    series without traffic; treat it as read-only."""

    key: SeriesKey
    minute_start_unix_ns: int
    bucket: Bucket
    packed: bytes | None = field(default=None, compare=False, repr=False)
    """The blob the minute ring got for `bucket` (None: an empty minute, or not made by
    `close_until`): views of the minute just closed alone are `bucket` when the ring holds
    this blob there (`ShardWindows.views_parts`)."""

    @property
    def end_unix_ns(self) -> int:
        return self.minute_start_unix_ns + MINUTE_NS

    @property
    def is_empty(self) -> bool:
        return self.bucket.is_empty


@dataclass(frozen=True, slots=True)
class SeriesWindowsState:
    """Plain-data state of `SeriesWindows` (packed blobs are `pack`ed `BucketState`s)."""

    version: int
    key: SeriesKey
    open: tuple[tuple[int, BucketState], ...]
    closed_until_unix_ns: int | None
    first_live_unix_ns: int | None
    last_seen_unix_ns: int | None
    too_late_pending: int
    sessions: SessionsState | None
    minutes: RingState
    hours: RingState
    days: RingState
    hours_rolled_until_unix_ns: int | None
    days_rolled_until_unix_ns: int | None


class SeriesWindows:
    """Windows of one series; see the module docstring."""

    __slots__ = ("_closed_until", "_config", "_days", "_days_rolled", "_first_live", "_hours",
                 "_hours_rolled", "_last_seen", "_minutes", "_open", "_sessions", "_stagger_ns",
                 "_too_late", "key")

    def __init__(self, key: SeriesKey, config: WindowConfig | None = None, *,
                 closed_until_unix_ns: int | None = None) -> None:
        self.key = key
        self._config = config = config or WindowConfig()
        self._open: dict[int, Bucket] = {}
        self._closed_until = closed_until_unix_ns
        self._first_live: int | None = None
        self._last_seen: int | None = None
        self._too_late = 0
        self._sessions: SessionTracker | None = None
        # Joined blobs (`CompactRing`) save ~50 B per blob, 3-5 KB a series.
        self._minutes = CompactRing(MINUTE_NS, config.minute_slots)
        self._hours = CompactRing(HOUR_NS, config.hourly_slots)
        self._days = CompactRing(DAY_NS, config.daily_slots)
        self._hours_rolled: int | None = None
        self._days_rolled: int | None = None
        spread = config.rollup_spread // timedelta(minutes=1)
        crc = zlib.crc32(repr(key).encode())
        self._stagger_ns = (crc % (spread + 1)) * MINUTE_NS

    # --- reading ---

    @property
    def closed_until_unix_ns(self) -> int | None:
        """End of the last closed minute: records before it are too late."""
        return self._closed_until

    @property
    def last_seen_unix_ns(self) -> int | None:
        """Highest event time folded in."""
        return self._last_seen

    def is_idle_since(self, unix_ns: int) -> bool:
        """No record with event time >= `unix_ns` was folded in."""
        return self._last_seen is None or self._last_seen < unix_ns

    @property
    def is_retired(self) -> bool:
        """Silent for `retire_after` with nothing left to emit: the owner may drop it."""
        if self._open or self._too_late or (self._sessions and self._sessions.open_segments):
            return False
        if self._last_seen is None or self._closed_until is None:
            return self._closed_until is not None
        return self._closed_until - self._last_seen > _ns(self._config.retire_after)

    @property
    def open_minutes(self) -> tuple[int, ...]:
        return tuple(sorted(self._open))

    # --- adding ---

    def add(self, record: LLMSpan | EvalResult,
            watermark_unix_ns: int | None = None) -> Lateness:
        """Fold one record into its minute unless that minute closed (then only counted)."""
        event = event_unix_ns(record)
        verdict = lateness(event, self._closed_until, watermark_unix_ns)
        if verdict == "too_late":
            self._too_late += 1
            return verdict
        bucket = self._bucket(minute_of(event))
        bucket.fold(record, self._config.categories)
        bucket.late_folded += verdict == "late_folded"
        if isinstance(record, LLMSpan):
            touch = touch_of(record)
            if touch is not None:
                self._session_tracker().touch(touch)
        self._seen(event)
        return verdict

    def add_partial(self, minute_start_unix_ns: int, state: BucketState | Bucket,
                    sessions: tuple[SessionTouch, ...] = (),
                    watermark_unix_ns: int | None = None) -> Lateness:
        """Merge a pre-aggregated bucket of this series' records from one minute.

        The whole partial gets one verdict: too late if its minute closed, late if even its
        newest record is behind the watermark, else on time. A `Bucket` given here is taken
        over when its minute has none yet (the caller must not use it afterwards).
        """
        records = state.records
        newest = state.max_event_unix_ns
        verdict = lateness(minute_start_unix_ns if newest is None else newest,
                           None, watermark_unix_ns)
        if self._closed_until is not None and minute_start_unix_ns < self._closed_until:
            self._too_late += records
            return "too_late"
        if isinstance(state, Bucket):
            bucket = self._bucket(minute_start_unix_ns, state)
            if bucket is not state:
                bucket.merge(state)
        else:
            bucket = self._bucket(minute_start_unix_ns)
            bucket.merge_state(state)
        if verdict == "late_folded":
            bucket.late_folded += records
        if sessions:
            self._session_tracker().touch_many(sessions)
        if newest is not None:
            self._seen(newest)
        return verdict

    def add_planned(self, minute_start_unix_ns: int, plans: Sequence[Planned],
                    categories: EvalCategories, sessions: tuple[SessionTouch, ...] = (),
                    watermark_unix_ns: int | None = None) -> Lateness:
        """`add_partial` for a partial that carries its records' plans: they are folded
        straight into the minute's bucket (no partial bucket to build and merge), with the
        same single verdict for all of them."""
        newest = max(p.event_unix_ns if isinstance(p, SpanPlan) else p.at_unix_ns for p in plans)
        verdict = lateness(newest, None, watermark_unix_ns)
        if self._closed_until is not None and minute_start_unix_ns < self._closed_until:
            self._too_late += len(plans)
            return "too_late"
        bucket = self._bucket(minute_start_unix_ns)
        fold_planned(bucket, plans, categories)
        if verdict == "late_folded":
            bucket.late_folded += len(plans)
        if sessions:
            self._session_tracker().touch_many(sessions)
        self._seen(newest)
        return verdict

    def _bucket(self, minute: int, adopt: Bucket | None = None) -> Bucket:
        bucket = self._open.get(minute)
        if bucket is None:
            bucket = self._open[minute] = adopt if adopt is not None else Bucket()
        if self._first_live is None or minute < self._first_live:
            self._first_live = minute
        elif self._last_seen is not None \
                and minute - self._last_seen > _ns(self._config.retire_after):
            self._first_live = minute  # silent past retire_after: a new live stretch starts
        return bucket

    def _seen(self, event: int) -> None:
        if self._last_seen is None or event > self._last_seen:
            self._last_seen = event

    def _session_tracker(self) -> SessionTracker:
        if self._sessions is None:
            self._sessions = SessionTracker(self._config.session_idle_timeout,
                                            self._config.max_open_sessions)
        return self._sessions

    # --- closing ---

    def close_until(self, watermark_unix_ns: int) -> list[ClosedMinute]:
        """Close every minute ending at or before the watermark, oldest first.

        A live series (a record within `retire_after`) gets an explicit empty minute when it
        had no traffic; closed sessions and too-late counts land in the minute being closed.
        """
        target = minute_of(watermark_unix_ns)
        minute = self._closed_until
        if minute is None:
            pending = [*self._open, target] if self._open else [target]
            minute = min(pending)
        closed: list[ClosedMinute] = []
        while minute < target:
            self._closed_until = minute
            end = minute + MINUTE_NS
            bucket = self._extras(self._open.pop(minute, None), end)
            if bucket is None and not self._is_live(minute):
                minute = self._next_busy_minute(minute, target)
                continue
            if bucket is None:
                bucket = Bucket()
            closed.append(ClosedMinute(self.key, minute, bucket, self._store(minute, bucket)))
            minute = end
        if self._closed_until is None or target > self._closed_until:
            self._closed_until = target
        self._roll_hours(due_by=self._closed_until)
        return closed

    def _extras(self, bucket: Bucket | None, end: int) -> Bucket | None:
        """Fold closed sessions and too-late counts into the minute ending at `end`."""
        sessions = self._sessions.close_until(end) if self._sessions is not None else []
        if not sessions and not self._too_late:
            return bucket
        bucket = bucket or Bucket()
        for session in sessions:
            bucket.fold_session(session.cost_pusd, session.priced_calls,
                                is_early=session.is_early)
        bucket.too_late += self._too_late
        self._too_late = 0
        return bucket

    def _is_live(self, minute: int) -> bool:
        if self._first_live is None or self._last_seen is None or minute < self._first_live:
            return False
        return minute + MINUTE_NS - self._last_seen <= _ns(self._config.retire_after)

    def _next_busy_minute(self, minute: int, target: int) -> int:
        """The next minute with something to emit (or `target`), skipping silent stretches."""
        candidates = [target, *(m for m in self._open if m > minute)]
        if self._first_live is not None and self._first_live > minute:
            candidates.append(self._first_live)
        # A lower bound of the next session deadline is enough: minutes before the deadline
        # are silent too (visiting one emits nothing, and its close makes the bound exact).
        deadline = self._sessions.deadline_bound_unix_ns() if self._sessions else None
        if deadline is not None:
            candidates.append(max(minute + MINUTE_NS, minute_of(deadline - 1)))
        return min(candidates)

    def _store(self, minute: int, bucket: Bucket) -> bytes | None:
        """Put a closed minute into the minute ring and roll up what is due; returns the blob
        stored (`ClosedMinute.packed`), None for an empty minute."""
        end = minute + MINUTE_NS
        # First roll up every hour that has minutes this put pushes out of the ring.
        self._roll_hours(before=end - self._minutes.size * MINUTE_NS)
        packed = None if bucket.is_empty else bucket.pack()
        self._minutes.put(minute, packed)
        self._closed_until = end
        if self._hours_rolled is None:
            self._hours_rolled = minute - minute % HOUR_NS
        self._roll_hours(due_by=end)
        return packed

    def _roll_hours(self, *, before: int | None = None, due_by: int | None = None) -> None:
        """Roll up complete hours: those starting before `before` (forced, the ring is about to
        drop their minutes), or those that ended this series' stagger before `due_by`."""
        closed = self._closed_until
        while self._hours_rolled is not None and closed is not None \
                and self._hours_rolled + HOUR_NS <= closed:
            hour = self._hours_rolled
            forced = before is not None and hour < before
            due = due_by is not None and hour + HOUR_NS + self._stagger_ns <= due_by
            if not (forced or due):
                break
            self._roll_days(before=hour + HOUR_NS - self._hours.size * HOUR_NS)
            self._hours.put(hour, _merged(self._minutes, hour, hour + HOUR_NS))
            self._hours_rolled = hour + HOUR_NS
            if self._days_rolled is None:
                self._days_rolled = hour - hour % DAY_NS
            self._roll_days(due_by=due_by)

    def _roll_days(self, *, before: int | None = None, due_by: int | None = None) -> None:
        """Roll up complete days (all their hours rolled), forced or due as in `_roll_hours`."""
        while self._days_rolled is not None and self._hours_rolled is not None \
                and self._days_rolled + DAY_NS <= self._hours_rolled:
            day = self._days_rolled
            forced = before is not None and day < before
            due = due_by is not None and day + DAY_NS + self._stagger_ns <= due_by
            if not (forced or due):
                break
            self._days.put(day, _merged(self._hours, day, day + DAY_NS))
            self._days_rolled = day + DAY_NS

    # --- views ---

    def covered(self, over: timedelta, end_unix_ns: int) -> tuple[int, int]:
        """The exact interval `[start, end)` that `view(over, end_unix_ns)` merges."""
        start, end, _ = self.runs(over, end_unix_ns)
        return start, end

    def view(self, over: timedelta, end_unix_ns: int) -> Bucket:
        """Closed records in the `over` before `end_unix_ns`, merged into one bucket.

        `end` is floored to a minute and clipped to the closed edge (open minutes are not
        included). Going back from it, the view uses a whole day when one is rolled up and
        fits, else a whole hour, else a minute; it stops when none fits or the rings do not
        reach further. So views <= 1 h are exact minute sums; longer ones are exact over
        `covered()`, which starts up to one hour (<= 1 d views) or one day (<= 8 d) after
        `end - over` when the finer ring no longer holds that edge. Rates should use the
        covered duration.
        """
        merged = Bucket()
        for blob in self._plan(over, end_unix_ns)[2]:
            merged.merge_packed(blob)
        return merged

    def holds_alone(self, minute_start_unix_ns: int, blob: bytes, over: timedelta) -> bool:
        """Whether `view(over, end)`, `end` the end of the minute, merges the minute's blob
        `blob` and nothing else: the closed edge is `end`, the minute ring holds `blob` there
        and no ring holds data in any other interval of the `over` before `end`. (A view reads
        some of those intervals, and this minute's slot unless a rollup holding it does; the
        rings hold the same data, so `runs` need not be walked.)"""
        end = minute_start_unix_ns + MINUTE_NS
        start = end - _ns(over)
        if self._closed_until != end or start > minute_start_unix_ns:
            return False
        minutes = self._minutes
        return (not minutes.has_data(start, minute_start_unix_ns)
                and not self._hours.has_data(start, end) and not self._days.has_data(start, end)
                and minutes.get(minute_start_unix_ns) == blob)

    def _plan(self, over: timedelta, end_unix_ns: int) -> tuple[int, int, list[bytes]]:
        start, end, runs = self.runs(over, end_unix_ns)
        return start, end, [blob for ring, low, high in runs for _, blob in ring.held(low, high)]

    def slots(self, over: timedelta,
              end_unix_ns: int) -> tuple[int, int, list[tuple[CompactRing, int]]]:
        """`covered()` and the (ring, interval start) of every interval `view` merges, newest
        first, without reading them (intervals holding no data included; `ring.unit_ns` and
        the start name an interval): `runs` expanded."""
        start, end, runs = self.runs(over, end_unix_ns)
        return start, end, [(ring, at) for ring, low, high in runs
                            for at in range(high - ring.unit_ns, low - 1, -ring.unit_ns)]

    def runs(self, over: timedelta, end_unix_ns: int) -> tuple[int, int, list[Run]]:
        """`slots` as runs `(ring, low, high)` of consecutive intervals of one ring starting in
        [low, high), newest run first, each as long as it can be (two runs next to each other
        are of different rings or not adjacent): callers read a run's intervals holding data
        at once (`CompactRing.held`) instead of every interval, most of which hold none, and
        equal plans have equal runs (a plan's slots start another's iff its runs but the last
        are the other's first runs and its last run ends the other's next one)."""
        if over <= _ZERO:
            raise ValueError(f"view length must be positive, got {over}")
        end = minute_of(end_unix_ns)
        if self._closed_until is not None:
            end = min(end, self._closed_until)
        start = end - _ns(over)
        runs: list[Run] = []
        # Closed minutes are known back to the ring's oldest slot; those after its newest slot
        # were skipped (the series was silent), so they are known to be empty.
        ring_end = self._minutes.end_unix_ns
        minutes_low = (end if ring_end is None else ring_end) - self._minutes.size * MINUTE_NS
        lowest_minute = max(start, minutes_low)
        minutes = self._minutes
        t = end
        while t > start:
            if (t % DAY_NS == 0 and t - DAY_NS >= start and self._days_rolled is not None
                    and t <= self._days_rolled and self._days.covers(t - DAY_NS)):
                _extend(runs, self._days, t - DAY_NS, t)
                t -= DAY_NS
            elif (t % HOUR_NS == 0 and t - HOUR_NS >= start and self._hours_rolled is not None
                  and t <= self._hours_rolled and self._hours.covers(t - HOUR_NS)):
                _extend(runs, self._hours, t - HOUR_NS, t)
                t -= HOUR_NS
            elif t - MINUTE_NS >= lowest_minute:
                # Minutes, in one go down to the next hour edge (where a rollup may take over)
                # or the lowest minute the view may use, whichever comes first.
                first = t - MINUTE_NS
                low = max(first - first % HOUR_NS,
                          first - (first - lowest_minute) // MINUTE_NS * MINUTE_NS)
                _extend(runs, minutes, low, t)
                t = low
            else:
                break
        return t, end, runs

    # --- state ---

    def snapshot(self) -> SeriesWindowsState:
        return SeriesWindowsState(
            version=STATE_VERSION, key=self.key,
            open=tuple((m, b.to_state()) for m, b in sorted(self._open.items())),
            closed_until_unix_ns=self._closed_until, first_live_unix_ns=self._first_live,
            last_seen_unix_ns=self._last_seen, too_late_pending=self._too_late,
            sessions=self._sessions.snapshot() if self._sessions is not None else None,
            minutes=self._minutes.snapshot(), hours=self._hours.snapshot(),
            days=self._days.snapshot(), hours_rolled_until_unix_ns=self._hours_rolled,
            days_rolled_until_unix_ns=self._days_rolled)

    @classmethod
    def restore(cls, state: SeriesWindowsState,
                config: WindowConfig | None = None) -> SeriesWindows:
        if state.version != STATE_VERSION:
            raise ValueError(f"SeriesWindowsState version {state.version} is not supported; "
                             f"expected {STATE_VERSION}")
        windows = cls(state.key, config, closed_until_unix_ns=state.closed_until_unix_ns)
        config = windows._config
        windows._open = {m: Bucket.from_state(s) for m, s in state.open}
        windows._first_live = state.first_live_unix_ns
        windows._last_seen = state.last_seen_unix_ns
        windows._too_late = state.too_late_pending
        if state.sessions is not None:
            windows._sessions = SessionTracker.restore(
                state.sessions, config.session_idle_timeout, config.max_open_sessions)
        windows._minutes = CompactRing.restore(state.minutes, config.minute_slots)
        windows._hours = CompactRing.restore(state.hours, config.hourly_slots)
        windows._days = CompactRing.restore(state.days, config.daily_slots)
        windows._hours_rolled = state.hours_rolled_until_unix_ns
        windows._days_rolled = state.days_rolled_until_unix_ns
        return windows


Run = tuple[CompactRing, int, int]
"""(ring, low, high): the ring's intervals starting in [low, high), newest first."""


def _extend(runs: list[Run], ring: CompactRing, low: int, high: int) -> None:
    """Add the older run (ring, low, high) to `runs`, joined to the last run when it goes on
    from it (so runs are as long as they can be, and equal plans have equal runs)."""
    if runs:
        last_ring, last_low, last_high = runs[-1]
        if last_ring is ring and last_low == high:
            runs[-1] = (ring, low, last_high)
            return
    runs.append((ring, low, high))


def _merged(ring: CompactRing, start: int, end: int) -> bytes | None:
    """Packed merge of a ring's blobs in [start, end), None when there are none."""
    blobs = list(ring.blobs(start, end))
    if not blobs:
        return None
    if len(blobs) == 1:
        return blobs[0]
    merged = Bucket()
    merge_all(merged, [unpack_fields(blob) for blob in blobs])
    return merged.pack()


_N_COUNTERS = len(COUNTERS)
_AT = {name: index for index, name in enumerate(BucketState.__slots__)}
_SESSION_MAX, _LOW, _HIGH, _SKETCHES, _TRUNCATED, _COST_MIX = (
    _AT[name] for name in ("session_cost_max_pusd", "min_event_unix_ns", "max_event_unix_ns",
                           "sketches", "truncated_versions", "cost_mix"))
_CONCATENATED = tuple(_AT[name] for name in (
    "error_kinds", "finish_reasons", "unknown_cost", "exemplars", "safety_failure_traces",
    "prompt_template_versions", "models", "app_versions"))


def merge_all(bucket: Bucket, fields: Sequence[Fields]) -> None:
    """`bucket.merge_fields(f)` for each of `fields` in turn (unpacked blobs, oldest first):
    the same state, cheaper for many (an hour's rollup merges 60: 13% less CPU for the whole
    rollup, unpacking and packing included; measured 2026-11 on the bench traffic's minutes).

    Their combination goes through one `merge_fields`: counters summed, event times and the
    session maximum taken over all, and each collection's items one list in blob order, which
    `merge_fields` adds as it would blob by blob (the capped label counts and the cost mix in
    that order; exemplars and version sets keep the same items in any order). Sketch payloads
    are then appended blob by blob, as `merge_fields` does.
    """
    for one in fields:
        if one[0] != BUCKET_STATE_VERSION:
            raise ValueError(f"BucketState version {one[0]} is not supported; "
                             f"expected {BUCKET_STATE_VERSION}")
    times = [at for one in fields for at in (one[_LOW], one[_HIGH]) if at is not None]
    combined: list[object] = [None] * (_COST_MIX + 1)
    combined[0] = BUCKET_STATE_VERSION
    combined[1:_N_COUNTERS + 1] = map(sum, zip(*[one[1:_N_COUNTERS + 1] for one in fields],
                                               strict=True))
    combined[_SESSION_MAX] = max([one[_SESSION_MAX] for one in fields])
    combined[_LOW] = min(times, default=None)
    combined[_HIGH] = max(times, default=None)
    for at in _CONCATENATED:
        combined[at] = [item for one in fields for item in one[at]]
    combined[_SKETCHES] = ()
    combined[_TRUNCATED] = tuple(map(any, zip(*[one[_TRUNCATED] for one in fields],
                                               strict=True)))
    combined[_COST_MIX] = [row for one in fields if len(one) > _COST_MIX for row in one[_COST_MIX]]
    bucket.merge_fields(tuple(combined))
    sketches = bucket.sketches
    for one in fields:
        for index, sketch in enumerate(one[_SKETCHES]):
            if sketch is not None:
                target = sketches[index]
                if target is None:
                    target = sketches[index] = QuantileSketch()
                target.merge_parts(*sketch)
