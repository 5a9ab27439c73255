"""Percentile-outlier detector (detect stage): a value against `factor` x a trailing quantile.

In: one value per request (or per step, weighted by `n`), e.g. output tokens. Out: a `Score`
comparing the value with `factor` x the trailing `window`'s `quantile` (tokens > 2x p95), or
None until the window holds `min_count` samples over `min_coverage` of its span.

The window is a ring of hourly (finer for short windows) DDSketch stores: the logarithmic
key mapping of the `ddsketch` package at 1% relative accuracy, with integer counts per key, so
a bucket's snapshot is plain (key, count) pairs and the quantile of the merged window is within
1% of the exact one. The window's merged counts are kept up to date as buckets come and go.
Anomalous values stay out of the sketch (`learn_anomalies = false`).

>>> from datetime import UTC, datetime, timedelta
>>> detector = _build({"window": "1d", "quantile": 0.95, "factor": 2.0, "min_count": 10})
>>> start = datetime(2025, 1, 6, tzinfo=UTC)
>>> for i in range(13 * 60):
...     detector.learn(100.0 + i % 50, start + timedelta(minutes=i))
>>> score = detector.score(400.0, start + timedelta(hours=13))
>>> score.is_anomalous, round(score.baseline / 147, 2)
(True, 1.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from ddsketch.mapping import LogarithmicMapping

from detectors.base import Score, check_version, register
from detectors.moments import closeness
from detectors.params import Params
from detectors.trailing import TrailingWindow, trailing_params, window_params

VERSION = 1
RELATIVE_ACCURACY = 0.01
MAX_KEYS = 1024  # per bucket and sign; beyond it the lowest keys collapse (upper tail exact)
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)

Bins = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class PercentileConfig:
    quantile: float
    factor: float
    window_s: float
    window: str
    min_count: int
    min_coverage: float
    learn_anomalies: bool
    cooldown: int
    min_samples: int


@dataclass(frozen=True, slots=True)
class PercentileState:
    version: int
    config: PercentileConfig
    bucket_ids: tuple[int | None, ...]
    positive: tuple[Bins, ...]
    """Per bucket: (key, count) of positive values, keys from ddsketch's LogarithmicMapping."""
    negative: tuple[Bins, ...]
    zeros: tuple[int, ...]
    incident_open: bool
    normal_run: int


@dataclass(slots=True)
class _Store:
    """Counts per sketch key for one sign, plus zeros; mergeable by adding counts."""

    positive: Counter[int]
    negative: Counter[int]
    zeros: int = 0

    @classmethod
    def empty(cls) -> _Store:
        return cls(Counter(), Counter())

    def add(self, value: float, count: int) -> None:
        if value > _MAPPING.min_possible:
            self.positive[_MAPPING.key(value)] += count
        elif value < -_MAPPING.min_possible:
            self.negative[_MAPPING.key(-value)] += count
        else:
            self.zeros += count

    def merge(self, other: _Store, sign: int = 1) -> None:
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, count in theirs.items():
                mine[key] += sign * count
                if mine[key] == 0:
                    del mine[key]
        self.zeros += sign * other.zeros

    @property
    def count(self) -> int:
        return sum(self.positive.values()) + sum(self.negative.values()) + self.zeros

    def quantile(self, q: float) -> float | None:
        """DDSketch's quantile: the value of the key holding rank q * (count - 1)."""
        total = self.count
        if total == 0:
            return None
        rank, seen = q * (total - 1), 0
        for key in sorted(self.negative, reverse=True):
            seen += self.negative[key]
            if seen > rank:
                return -_MAPPING.value(key)
        seen += self.zeros
        if seen > rank:
            return 0.0
        for key in sorted(self.positive):
            seen += self.positive[key]
            if seen > rank:
                return _MAPPING.value(key)
        return _MAPPING.value(max(self.positive))

    def collapse(self) -> _Store | None:
        """Fold the lowest keys into their neighbour while a sign has more than MAX_KEYS;
        returns the moved counts (as removals and additions) for the caller's totals."""
        moved = _Store.empty()
        for bins in (self.positive, self.negative):
            while len(bins) > MAX_KEYS:
                lowest, second = sorted(bins)[:2]
                count = bins.pop(lowest)
                bins[second] += count
                target = moved.positive if bins is self.positive else moved.negative
                target[lowest] -= count
                target[second] += count
        return moved if moved.positive or moved.negative else None

    def export(self) -> tuple[Bins, Bins, int]:
        return (tuple(sorted(self.positive.items())), tuple(sorted(self.negative.items())),
                self.zeros)


_EMPTY_EXPORT: tuple[Bins, Bins, int] = ((), (), 0)
"""`_Store.empty().export()`."""


class Percentile(TrailingWindow):
    """Compares each value with `factor` x the trailing window's quantile."""

    kind: ClassVar[str] = "percentile"
    config: PercentileConfig

    def _reset(self) -> None:
        # A slot's store is made when it first learns a point (None: empty): a new series'
        # detector would otherwise make two `Counter`s for each of its 24-168 slots at once.
        self._buckets: list[_Store | None] = [None] * len(self._ring.ids)
        self._held = _Store.empty()  # all buckets in the ring merged, kept up to date

    def _clear(self, slot: int) -> None:
        bucket = self._buckets[slot]
        if bucket is not None:
            self._held.merge(bucket, sign=-1)
            self._buckets[slot] = None

    def threshold_quantile(self, at: datetime) -> float | None:
        """The window's quantile, or None while the window is too thin."""
        at_s = at.timestamp()
        slots = self._ring.window(at_s)
        window = self._held
        if len(slots) < sum(held is not None for held in self._ring.ids):
            window = _Store.empty()  # some held buckets have aged out: merge the rest
            for slot in slots:
                bucket = self._buckets[slot]
                if bucket is not None:
                    window.merge(bucket)
        c = self.config
        if window.count < c.min_count or self._ring.coverage(at_s, slots, c.window_s) < (
                c.min_coverage):
            return None
        return window.quantile(c.quantile)

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        """None while warming up, for n < min_samples, and when the quantile is not positive
        (a multiple of zero or less means nothing)."""
        if not self._is_scored(value, n):
            return None
        reference = self.threshold_quantile(at)
        if reference is None or reference <= 0:
            return None
        c = self.config
        is_anomalous = value > c.factor * reference
        return Score(
            value=value, baseline=reference, spread=(c.factor - 1) * reference,
            anomaly=closeness(value, reference, c.factor), is_anomalous=is_anomalous,
            is_onset=self._incident.is_onset(is_anomalous), detector=self.kind,
            detail=f"{value:.6g} is {value / reference:.2f}x the {c.window} "
                   f"p{c.quantile * 100:g} {reference:.6g} (limit {c.factor:g}x)")

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        slot = None if n <= 0 else self._slot_to_learn(value, at, n)
        if slot is None:
            return
        bucket = self._buckets[slot]
        if bucket is None:
            bucket = self._buckets[slot] = _Store.empty()
        added = _Store.empty()
        added.add(value, n)
        bucket.merge(added)
        self._held.merge(added)
        moved = bucket.collapse()
        if moved is not None:
            self._held.merge(moved)

    def snapshot(self) -> PercentileState:
        exported = [_EMPTY_EXPORT if bucket is None else bucket.export()
                    for bucket in self._buckets]
        return PercentileState(
            VERSION, self.config, tuple(self._ring.ids), tuple(e[0] for e in exported),
            tuple(e[1] for e in exported), tuple(e[2] for e in exported),
            self._incident.is_open, self._incident.normal_run)

    @classmethod
    def restore(cls, state: PercentileState) -> Self:
        check_version(cls.kind, state.version, VERSION)
        detector = cls(state.config)
        detector._load(state.bucket_ids, state.incident_open, state.normal_run)
        for slot, (positive, negative, zeros) in enumerate(
                zip(state.positive, state.negative, state.zeros, strict=True)):
            bucket = _Store(Counter(dict(positive)), Counter(dict(negative)), zeros)
            detector._buckets[slot] = bucket
            detector._held.merge(bucket)
        return detector


@register("percentile", example={"window": "1d", "quantile": 0.95, "factor": 2.0})
def _build(params: Mapping[str, Any]) -> Percentile:
    p = Params(params, "percentile")
    window_s, window = window_params(p, params, "window")
    config = PercentileConfig(
        quantile=p.number("quantile", default=0.95, low=0.0, high=1.0, low_inclusive=False),
        factor=p.number("factor", default=2.0, low=1.0, high=1e6),
        window_s=window_s, window=window,
        min_count=p.integer("min_count", default=100, low=1),
        **trailing_params(p),
    )
    p.done()
    return Percentile(config)
