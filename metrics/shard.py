"""The window stage for one shard of series: what a stateful Bytewax step keeps per shard key.

In: records or `Partial`s keyed to series on this shard, and the watermark. Out: the
`ClosedMinute`s of every live series when the watermark passes a minute, views per series,
and late-record counts; series silent for `retire_after` are dropped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ingest.span import EvalResult, LLMSpan
from metrics.bounded import CappedCounts, WorstSpans
from metrics.bucket import EXEMPLAR_LIMIT, MINUTE_NS, SKETCHES, Bucket, minute_of
from metrics.bucket_state import COUNTERS, BucketState, Fields, unpack_fields
from metrics.bucket_state import STATE_VERSION as BUCKET_STATE_VERSION
from metrics.partial import Partial
from metrics.series import SeriesKey
from metrics.sketch import QuantileSketch
from metrics.watermark import LateCounter, LateCounterState, Lateness
from metrics.windows import ClosedMinute, Run, SeriesWindows, SeriesWindowsState, WindowConfig

STATE_VERSION = 1

View = tuple[timedelta, int, frozenset[str]]
"""(over, end, parts) of a `view_parts`."""

ViewKey = tuple[tuple[tuple[int, int], ...], frozenset[str]]
"""What a partial view merges: the (ring unit, interval start) of each blob, in
`SeriesWindows.slots` order, and its parts. Closed intervals never change once stored (a minute
is stored once when it closes, an hour or a day once when rolled up), so views of one series
with equal keys are equal."""

PARTS = frozenset({*SKETCHES, "error_kinds", "unknown_cost"})
"""What a partial view may merge besides counters, exemplars and versions (`catalog.reads`)."""


@dataclass(frozen=True, slots=True)
class ShardState:
    version: int
    closed_until_unix_ns: int | None
    late: LateCounterState
    retired: int
    series: tuple[SeriesWindowsState, ...]


class ShardWindows:
    """`SeriesWindows` of every series on one shard, closed together by one watermark."""

    __slots__ = ("_closed_until", "_config", "_fresh", "_series", "late", "retired")

    def __init__(self, config: WindowConfig | None = None) -> None:
        self._config = config or WindowConfig()
        self._series: dict[SeriesKey, SeriesWindows] = {}
        self._closed_until: int | None = None
        self.late = LateCounter()
        self.retired = 0
        """Series dropped after `retire_after` of silence, ever."""
        self._fresh: dict[SeriesKey, ClosedMinute] = {}
        """The newest minute with data the last `close_until` closed, per series: views of
        it alone (rule evaluation reads them right after) are its bucket (`views_parts`).
        Held until the next `close_until`; not pickled."""

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # What default pickling of the slots gave before `_fresh` existed, in the same order,
        # so pickled shards stay as they were.
        return None, {name: getattr(self, name) for name in _PICKLED}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        self._fresh = {}

    @property
    def closed_until_unix_ns(self) -> int | None:
        return self._closed_until

    def __len__(self) -> int:
        return len(self._series)

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self._series)

    def get(self, key: SeriesKey) -> SeriesWindows | None:
        return self._series.get(key)

    def add(self, key: SeriesKey, record: LLMSpan | EvalResult,
            watermark_unix_ns: int | None = None) -> Lateness:
        """Fold a record into series `key` (created on first sight); counted by lateness."""
        verdict = self._windows(key).add(record, watermark_unix_ns)
        self.late.count(verdict)
        return verdict

    def add_partial(self, partial: Partial, watermark_unix_ns: int | None = None) -> Lateness:
        """Merge a pre-aggregated partial; all its records share one verdict."""
        windows = self._windows(partial.key)
        if partial.folded is None:
            verdict = windows.add_planned(partial.minute_start_unix_ns, partial.plans,
                                          partial.categories, partial.sessions, watermark_unix_ns)
        else:
            verdict = windows.add_partial(partial.minute_start_unix_ns, partial.folded,
                                          partial.sessions, watermark_unix_ns)
        self.late.count(verdict, partial.records)
        return verdict

    def _windows(self, key: SeriesKey) -> SeriesWindows:
        windows = self._series.get(key)
        if windows is None:
            windows = self._series[key] = SeriesWindows(
                key, self._config, closed_until_unix_ns=self._closed_until)
        return windows

    def close_until(self, watermark_unix_ns: int) -> list[ClosedMinute]:
        """Close every series up to the watermark; minutes in time order, then by series.

        Retired series (silent for `retire_after`, nothing pending) are dropped afterwards.
        """
        closed: list[ClosedMinute] = []
        for windows in self._series.values():
            closed.extend(windows.close_until(watermark_unix_ns))
        for key in [k for k, w in self._series.items() if w.is_retired]:
            del self._series[key]
            self.retired += 1
        target = minute_of(watermark_unix_ns)
        if self._closed_until is None or target > self._closed_until:
            self._closed_until = target
        closed.sort(key=lambda c: c.minute_start_unix_ns)  # stable: series order kept
        self._fresh = {minute.key: minute for minute in closed if minute.packed is not None}
        return closed

    def view(self, key: SeriesKey, over: timedelta, end_unix_ns: int) -> Bucket | None:
        """`SeriesWindows.view` of one series, None for an unknown (or retired) series."""
        windows = self._series.get(key)
        return None if windows is None else windows.view(over, end_unix_ns)

    def view_parts(self, key: SeriesKey, over: timedelta, end_unix_ns: int,
                   parts: frozenset[str]) -> Bucket | None:
        """`view` with only `parts` besides counters, exemplars and versions (`partial_view`),
        None for an unknown (or retired) series."""
        return self.views_parts(key, [(over, end_unix_ns, parts)])[0]

    def views_parts(self, key: SeriesKey, wanted: Sequence[View]) -> list[Bucket | None]:
        """`view_parts` of each (over, end, parts) of one series, each blob unpacked once and
        the merging shared by views that extend one another (a 5 m, a 15 m and a 1 h view to
        the same end: the 1 h view's first 15 minutes are the 15 m view). Views that merge the
        same blobs share one bucket holding every part any of them asked for.

        Views that all merge just the minute the last `close_until` closed (a series' first
        minute with data, or the only one in its windows) are that minute's bucket, whole (a
        view of one blob holds what the blob holds): nothing unpacked or merged."""
        windows = self._series.get(key)
        if windows is None:
            return [None] * len(wanted)
        fresh = self._fresh.get(key)
        if fresh is not None and fresh.packed is not None and _fresh_alone(
                windows, fresh.minute_start_unix_ns, fresh.packed, wanted):
            _check_parts([parts for _, _, parts in wanted])
            return [fresh.bucket] * len(wanted)
        plans = [windows.runs(over, end)[2] for over, end, _ in wanted]
        out: list[Bucket | None] = [None] * len(wanted)
        sizes = [_size(plan) for plan in plans]
        groups = _groups(plans, sizes)
        # Unpacked blobs are kept between groups only when there are several (other ends, or a
        # rollup taking over in the longer view): usually all views extend one another.
        shared = len(groups) > 1
        unpacked: dict[tuple[int, int], Fields] = {}
        for group in groups:
            packed, positions, held = _read_runs(plans[group[0]])
            if not shared:
                fields = [unpack_fields(blob) for blob in packed]
            else:
                fields = []
                for slot, blob in zip(held, packed, strict=True):
                    one = unpacked.get(slot)
                    if one is None:
                        one = unpacked[slot] = unpack_fields(blob)
                    fields.append(one)
            # A view of the first k slots merges the blobs at positions before k.
            merged = partial_views(fields, [(bisect_left(positions, sizes[i]), wanted[i][2])
                                            for i in group])
            for i, bucket in zip(group, merged, strict=True):
                out[i] = bucket
        return out

    def view_keys(self, key: SeriesKey, wanted: Sequence[View]) -> list[ViewKey] | None:
        """The `ViewKey` of each view `views_parts(key, wanted)` makes (None for an unknown
        or retired series), read without unpacking a blob: a caller keeping the views of a
        quiet series merges again only those whose key changed."""
        windows = self._series.get(key)
        if windows is None:
            return None
        plans = [windows.runs(over, end)[2] for over, end, _ in wanted]
        out: list[ViewKey] = [((), frozenset())] * len(wanted)
        sizes = [_size(plan) for plan in plans]
        for group in _groups(plans, sizes):
            _, positions, held = _read_runs(plans[group[0]])
            for i in group:
                out[i] = (tuple(held[:bisect_left(positions, sizes[i])]), wanted[i][2])
        return out

    def snapshot(self) -> ShardState:
        return ShardState(STATE_VERSION, self._closed_until, self.late.snapshot(), self.retired,
                          tuple(w.snapshot() for w in self._series.values()))

    @classmethod
    def restore(cls, state: ShardState, config: WindowConfig | None = None) -> ShardWindows:
        if state.version != STATE_VERSION:
            raise ValueError(f"ShardState version {state.version} is not supported; "
                             f"expected {STATE_VERSION}")
        shard = cls(config)
        shard._closed_until = state.closed_until_unix_ns
        shard.late = LateCounter.restore(state.late)
        shard.retired = state.retired
        for series_state in state.series:
            shard._series[series_state.key] = SeriesWindows.restore(series_state, shard._config)
        return shard


_N_COUNTERS = len(COUNTERS)
_AT = {name: index for index, name in enumerate(BucketState.__slots__)}
_SESSION_MAX, _ERROR_KINDS, _UNKNOWN_COST, _SKETCHES, _EXEMPLARS, _PROMPTS, _TRUNCATED = (
    _AT[name] for name in ("session_cost_max_pusd", "error_kinds", "unknown_cost", "sketches",
                           "exemplars", "prompt_template_versions", "truncated_versions"))
_VERSION_SETS = ("prompt_template_versions", "models", "app_versions")
"""In the order of the fields, from `_PROMPTS` on, and of `truncated_versions`."""
_NOT_TRUNCATED = (False, False, False)
_SKETCH_INDEX = {name: index for index, name in enumerate(SKETCHES)}


def partial_view(fields: Sequence[Fields], parts: frozenset[str]) -> Bucket:
    """The merge of unpacked blobs (`unpack_fields`) as `Bucket.merge_fields` of each would
    make it, but only: every counter and `session_cost_max_pusd`, the exemplars, the version
    sets, and of the rest the `parts` named (sketch names, "error_kinds", "unknown_cost").

    What rule evaluation reads (`catalog.reads` of its metrics, plus an evaluation's exemplars
    and versions) at a fraction of the cost; anything else (event times, other sketches,
    finish reasons, cost mix, safety traces) stays empty, so the bucket is for reading those
    parts only, never for packing or merging on.

    Raises:
        ValueError: a blob of an unsupported state version, or an unknown part.
    """
    return partial_views(fields, [(len(fields), parts)])[0]


def partial_views(fields: Sequence[Fields],
                  cuts: Sequence[tuple[int, frozenset[str]]]) -> list[Bucket]:
    """`partial_view(fields[:n], parts)` for each `(n, parts)`, merging the shared prefixes
    once. Cuts of the same `n` share one bucket, with the union of their parts (a 5 m and a
    1 h view of a series whose blobs all lie in the last 5 minutes merge the same blobs)."""
    _check_parts([parts for _, parts in cuts])
    for unpacked in fields:
        if unpacked[0] != BUCKET_STATE_VERSION:
            raise ValueError(f"BucketState version {unpacked[0]} is not supported; "
                             f"expected {BUCKET_STATE_VERSION}")
    wanted: dict[int, frozenset[str]] = {}
    for upto, parts in cuts:
        wanted[upto] = wanted[upto] | parts if upto in wanted else parts
    totals = _Totals()
    done = 0
    made: dict[int, Bucket] = {}
    last = max(wanted, default=0)
    for upto in sorted(wanted):
        if upto > done:
            totals.add(fields[done:upto])
            done = upto
        made[upto] = totals.bucket(fields[:upto], wanted[upto], last=upto == last)
    return [made[upto] for upto, _ in cuts]


def _fresh_alone(windows: SeriesWindows, minute: int, blob: bytes,
                 wanted: Sequence[View]) -> bool:
    """Whether every view `wanted` merges the blob of `minute` (`blob`, closed last) and no
    other: views that all end with that minute, the longest holding no other blob (a shorter
    view to the same end reads some of the intervals of the longer one, or minutes where the
    longer one reads their rollup, which holds what they hold)."""
    end = minute + MINUTE_NS
    if not wanted:
        return False
    longest = wanted[0][0]
    for over, at, _ in wanted:
        if at - at % MINUTE_NS < end:  # (later ends are clipped to the closed edge, `end`)
            return False
        longest = max(longest, over)
    # (the blob is compared too: a minute of another shard's series is never taken)
    return windows.holds_alone(minute, blob, longest)


def _check_parts(wanted: Sequence[frozenset[str]]) -> None:
    for parts in wanted:
        if not parts <= PARTS:
            raise ValueError(f"unknown view parts {sorted(parts - PARTS)}; expected some of "
                             f"{sorted(PARTS)}")


_PICKLED = ("_closed_until", "_config", "_series", "late", "retired")
"""The slots of `ShardWindows` its pickles hold, in the order they always had."""


def _read_runs(runs: Sequence[Run]) -> tuple[list[bytes], list[int], list[tuple[int, int]]]:
    """The blobs of the intervals of `runs` (`SeriesWindows.runs`) holding data, in slot order,
    their positions among the slots (`SeriesWindows.slots`) and their (ring unit, start)."""
    packed: list[bytes] = []
    positions: list[int] = []
    held: list[tuple[int, int]] = []
    offset = 0
    for ring, low, high in runs:
        unit = ring.unit_ns
        for at, blob in ring.held(low, high):
            packed.append(blob)
            positions.append(offset + (high - unit - at) // unit)
            held.append((unit, at))
        offset += (high - low) // unit
    return packed, positions, held


def _size(runs: Sequence[Run]) -> int:
    """How many intervals (slots) `runs` hold."""
    return sum((high - low) // ring.unit_ns for ring, low, high in runs)


def _is_prefix(plan: Sequence[Run], longest: Sequence[Run]) -> bool:
    """Whether the slots of `plan` start the slots of `longest` (runs are as long as they can
    be, so all but the last run match, and the last one ends the next run of `longest`)."""
    if not plan:
        return True
    last = len(plan) - 1
    if last >= len(longest) or plan[:last] != longest[:last]:
        return False
    ring, low, high = plan[last]
    other, other_low, other_high = longest[last]
    return ring is other and high == other_high and low >= other_low


def _groups(plans: list[list[Run]], sizes: list[int]) -> list[list[int]]:
    """Indexes of `plans` in groups whose plans are prefixes of the group's first (longest);
    `sizes` are their slot counts."""
    groups: list[list[int]] = []
    remaining = sorted(range(len(plans)), key=lambda i: -sizes[i])
    while remaining:
        longest = plans[remaining[0]]
        group: list[int] = []
        rest: list[int] = []
        for i in remaining:
            (group if _is_prefix(plans[i], longest) else rest).append(i)
        groups.append(group)
        remaining = rest
    return groups


class _Totals:
    """Running totals of the counters, exemplars and versions of a stretch of blobs. Sums in
    any order are the same integers, and the bounded collections keep what merging blobs one
    by one keeps whatever the order (`metrics.bounded`), so each stretch is taken at once."""

    __slots__ = ("session_max", "sums", "truncated", "versions", "worst")

    def __init__(self) -> None:
        self.sums = [0] * _N_COUNTERS
        self.session_max = 0
        self.worst = WorstSpans(EXEMPLAR_LIMIT)
        self.versions: tuple[set[str], set[str], set[str]] = (set(), set(), set())
        self.truncated = [False, False, False]

    def add(self, stretch: Sequence[Fields]) -> None:
        self.sums = list(map(sum, zip(self.sums, *[unpacked[1:_N_COUNTERS + 1]
                                                   for unpacked in stretch], strict=True)))
        self.session_max = max(self.session_max,
                               *[unpacked[_SESSION_MAX] for unpacked in stretch])
        self.worst.merge([item for unpacked in stretch for item in unpacked[_EXEMPLARS]])
        for at, values in enumerate(self.versions):
            values.update(*[unpacked[_PROMPTS + at] for unpacked in stretch])
        for unpacked in stretch:
            if unpacked[_TRUNCATED] != _NOT_TRUNCATED:
                self.truncated = [a or b for a, b in zip(self.truncated, unpacked[_TRUNCATED],
                                                         strict=True)]

    def bucket(self, fields: Sequence[Fields], parts: frozenset[str], *,
               last: bool = False) -> Bucket:
        """A partial view: these totals, plus the `parts` merged from its `fields`. `last`:
        no bucket is made from these totals afterwards, so the bucket takes their exemplars
        over (they are what merging them into empty ones would give)."""
        bucket = Bucket()
        for name, total in zip(COUNTERS, self.sums, strict=True):
            if total:
                setattr(bucket, name, total)
        bucket.session_cost_max_pusd = self.session_max
        if last:
            bucket.exemplars = self.worst
        else:
            bucket.exemplars.merge(self.worst.items)
        for name, values, truncated in zip(_VERSION_SETS, self.versions, self.truncated,
                                           strict=True):
            if values or truncated:
                getattr(bucket, name).merge(sorted(values), truncated)
        if not parts:  # counters only (rates, means, counts)
            return bucket
        # Capped counts are merged blob by blob in view order, as `merge_fields` does (which
        # labels keep their own count past the cap depends on the order).
        if "error_kinds" in parts:
            _merge_counts(bucket.error_kinds, fields, _ERROR_KINDS)
        if "unknown_cost" in parts:
            _merge_counts(bucket.unknown_cost, fields, _UNKNOWN_COST)
        for name in parts:
            index = _SKETCH_INDEX.get(name)
            if index is not None:
                sketch = None
                for unpacked in fields:
                    state = unpacked[_SKETCHES][index]
                    if state is not None:
                        if sketch is None:
                            sketch = QuantileSketch()
                        sketch.merge_parts(*state)
                bucket.sketches[index] = sketch
        return bucket


def _merge_counts(counts: CappedCounts, fields: Sequence[Fields], at: int) -> None:
    for unpacked in fields:
        if unpacked[at]:
            counts.merge(unpacked[at])
