"""Event-time progress for the window stage: the watermark, and what happens to late records.

In: per source partition, the highest event time read so far and the wall time it was read at
(progress records). Out: the watermark (minutes ending at or before it may close), and for each
record a verdict, on time, late but folded, or too late, counted by reason so nothing is
dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

STATE_VERSION = 1

Lateness = Literal["on_time", "late_folded", "too_late"]
LATENESS: tuple[Lateness, ...] = ("on_time", "late_folded", "too_late")


def _ns(duration: timedelta) -> int:
    return duration // timedelta(microseconds=1) * 1000


def lateness(event_unix_ns: int, closed_until_unix_ns: int | None,
             watermark_unix_ns: int | None = None) -> Lateness:
    """How late a record is: `too_late` when its minute already closed (it is counted, not
    folded); `late_folded` when the watermark passed it but its minute is still open;
    `on_time` otherwise."""
    if closed_until_unix_ns is not None and event_unix_ns < closed_until_unix_ns:
        return "too_late"
    if watermark_unix_ns is not None and event_unix_ns < watermark_unix_ns:
        return "late_folded"
    return "on_time"


@dataclass(frozen=True, slots=True)
class LateCounterState:
    version: int
    counts: tuple[tuple[str, int], ...]


class LateCounter:
    """Counts records by `Lateness` (the lead exports these as metrics)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[Lateness, int] = dict.fromkeys(LATENESS, 0)

    def classify(self, event_unix_ns: int, closed_until_unix_ns: int | None, *,
                 watermark_unix_ns: int | None = None, records: int = 1) -> Lateness:
        """The record's `lateness`, counted `records` times."""
        verdict = lateness(event_unix_ns, closed_until_unix_ns, watermark_unix_ns)
        self.count(verdict, records)
        return verdict

    def count(self, verdict: Lateness, records: int = 1) -> None:
        self.counts[verdict] += records

    def snapshot(self) -> LateCounterState:
        return LateCounterState(STATE_VERSION, tuple(self.counts.items()))

    @classmethod
    def restore(cls, state: LateCounterState) -> LateCounter:
        counter = cls()
        for verdict, count in state.counts:
            if verdict in counter.counts:
                counter.counts[verdict] = count
        return counter


@dataclass(frozen=True, slots=True)
class WatermarkState:
    version: int
    started_wall_unix_ns: int
    partitions: tuple[tuple[str, int | None, int], ...]
    """(partition, max event time or None, wall time of its last progress)."""
    emitted_unix_ns: int | None


class _Partition:
    __slots__ = ("max_event_unix_ns", "progress_wall_unix_ns")

    def __init__(self, max_event_unix_ns: int | None, progress_wall_unix_ns: int) -> None:
        self.max_event_unix_ns = max_event_unix_ns
        self.progress_wall_unix_ns = progress_wall_unix_ns


class Watermark:
    """Watermark over source partitions (pure: every wall time is an argument).

    `current(wall)` is the minimum over partitions of their highest event time, minus
    `allowed_lateness`. A partition that made no progress (its highest event time did not grow)
    for `idle_timeout` of wall time is left out, so a dead or empty partition cannot stall every
    window; its later records may then be late (counted). When every partition is idle, e.g.
    traffic stopped, event time is extrapolated at wall speed from the last progress (minus the
    idle timeout), so minutes keep closing and a drop to zero is visible.

    It is None until every expected partition reported or timed out; afterwards a newly
    expected partition holds it (no advance) until it reports or times out. It never decreases.
    """

    __slots__ = ("_emitted", "_idle_ns", "_lateness_ns", "_partitions", "_started")

    def __init__(self, expected_partitions: Iterable[str], *, allowed_lateness: timedelta,
                 idle_timeout: timedelta, started_wall_unix_ns: int) -> None:
        if allowed_lateness < timedelta(0):
            raise ValueError(f"allowed_lateness must be >= 0, got {allowed_lateness}")
        if idle_timeout <= timedelta(0):
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        self._lateness_ns = _ns(allowed_lateness)
        self._idle_ns = _ns(idle_timeout)
        self._started = started_wall_unix_ns
        self._partitions: dict[str, _Partition] = {
            p: _Partition(None, started_wall_unix_ns) for p in expected_partitions}
        self._emitted: int | None = None

    @property
    def partitions(self) -> frozenset[str]:
        return frozenset(self._partitions)

    def expect(self, partition: str, wall_unix_ns: int) -> None:
        """Add a partition (e.g. after a rebalance); it has `idle_timeout` to report."""
        self._partitions.setdefault(partition, _Partition(None, wall_unix_ns))

    def observe(self, partition: str, max_event_unix_ns: int, wall_unix_ns: int) -> None:
        """Partition `partition` has read records up to event time `max_event_unix_ns`."""
        entry = self._partitions.setdefault(partition, _Partition(None, wall_unix_ns))
        if entry.max_event_unix_ns is None or max_event_unix_ns > entry.max_event_unix_ns:
            entry.max_event_unix_ns = max_event_unix_ns
            entry.progress_wall_unix_ns = wall_unix_ns

    def resumed(self, wall_unix_ns: int) -> None:
        """Restored after a restart: every partition gets `idle_timeout` from `wall_unix_ns` to
        report, as on a fresh start. The downtime is not idleness: what was written meanwhile
        is still to be read, and extrapolating event time over it would close those minutes
        before their records arrive."""
        for partition in self._partitions.values():
            partition.progress_wall_unix_ns = max(partition.progress_wall_unix_ns, wall_unix_ns)

    def idle_partitions(self, wall_unix_ns: int) -> frozenset[str]:
        """Partitions without progress for `idle_timeout`, left out of the watermark."""
        return frozenset(name for name, p in self._partitions.items()
                         if self._is_idle(p, wall_unix_ns))

    def _is_idle(self, partition: _Partition, wall_unix_ns: int) -> bool:
        return wall_unix_ns - partition.progress_wall_unix_ns >= self._idle_ns

    def current(self, wall_unix_ns: int) -> int | None:
        """The watermark at wall time `wall_unix_ns` (see the class docstring)."""
        active: list[int] = []
        extrapolated: int | None = None
        for partition in self._partitions.values():
            is_idle = self._is_idle(partition, wall_unix_ns)
            max_event = partition.max_event_unix_ns
            if max_event is None:
                if not is_idle:
                    return self._emitted  # an expected partition has not reported yet: hold
                continue
            if not is_idle:
                active.append(max_event)
            guess = max_event + (wall_unix_ns - partition.progress_wall_unix_ns - self._idle_ns)
            extrapolated = guess if extrapolated is None else max(extrapolated, guess)
        if active:
            candidate: int | None = min(active) - self._lateness_ns
        elif extrapolated is not None:
            candidate = extrapolated - self._lateness_ns
        else:
            candidate = None
        if candidate is not None and (self._emitted is None or candidate > self._emitted):
            self._emitted = candidate
        return self._emitted

    def snapshot(self) -> WatermarkState:
        return WatermarkState(
            version=STATE_VERSION, started_wall_unix_ns=self._started,
            partitions=tuple((name, p.max_event_unix_ns, p.progress_wall_unix_ns)
                             for name, p in sorted(self._partitions.items())),
            emitted_unix_ns=self._emitted)

    @classmethod
    def restore(cls, state: WatermarkState, *, allowed_lateness: timedelta,
                idle_timeout: timedelta) -> Watermark:
        if state.version != STATE_VERSION:
            raise ValueError(f"WatermarkState version {state.version} is not supported")
        watermark = cls((), allowed_lateness=allowed_lateness, idle_timeout=idle_timeout,
                        started_wall_unix_ns=state.started_wall_unix_ns)
        for name, max_event, progress in state.partitions:
            watermark._partitions[name] = _Partition(max_event, progress)
        watermark._emitted = state.emitted_unix_ns
        return watermark
