"""The window stage for one shard of series: what a stateful Bytewax step keeps per shard key.

In: records or `Partial`s keyed to series on this shard, and the watermark. Out: the
`ClosedMinute`s of every live series when the watermark passes a minute, views per series,
and late-record counts; series silent for `retire_after` are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from ingest.span import EvalResult, LLMSpan
from metrics.bucket import Bucket, minute_of
from metrics.partial import Partial
from metrics.series import SeriesKey
from metrics.watermark import LateCounter, LateCounterState, Lateness
from metrics.windows import ClosedMinute, SeriesWindows, SeriesWindowsState, WindowConfig

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class ShardState:
    version: int
    closed_until_unix_ns: int | None
    late: LateCounterState
    retired: int
    series: tuple[SeriesWindowsState, ...]


class ShardWindows:
    """`SeriesWindows` of every series on one shard, closed together by one watermark."""

    __slots__ = ("_closed_until", "_config", "_series", "late", "retired")

    def __init__(self, config: WindowConfig | None = None) -> None:
        self._config = config or WindowConfig()
        self._series: dict[SeriesKey, SeriesWindows] = {}
        self._closed_until: int | None = None
        self.late = LateCounter()
        self.retired = 0
        """Series dropped after `retire_after` of silence, ever."""

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
        return closed

    def view(self, key: SeriesKey, over: timedelta, end_unix_ns: int) -> Bucket | None:
        """`SeriesWindows.view` of one series, None for an unknown (or retired) series."""
        windows = self._series.get(key)
        return None if windows is None else windows.view(over, end_unix_ns)

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
