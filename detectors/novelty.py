"""Novelty detector: a label value never seen before (a new user segment, endpoint, model...)
that reaches `min_count` requests within `window` of its first sighting.

In: `observe(label, count, at)`, the requests carrying one value of the label in a window; it
scores, then learns. Out: a `Score` per observation (None while warming up): anomalous while a
new value is within `window` of its first sighting and has reached `min_count`; `is_onset` once
per new value. A new value that stays below `min_count` for `window` joins the known values
quietly, so a slow trickle never fires. Values seen during `warmup` are the known population.
Score: value = the new value's requests since its first sighting (this observation's count for
a known value), baseline = `min_count`, spread = 0, anomaly = share of `min_count` reached
(0 for known values): a threshold, not a test, so no p-value.

Memory is bounded: at most `max_values` values are remembered, least recently seen forgotten
first, and a value unseen for `forget_after` is forgotten too. A forgotten value that comes back
is new again and fires if it reaches the volume: keep `max_values` above the label's real
cardinality (user ids are not a segment).

Scalar contract (`score`/`learn`): `value` is the window volume of a value not seen before, as
counted by the caller; after warm-up it is anomalous when value >= min_count (an incident ends
after `window` without one). `n` is ignored there: the value already is a request count.

>>> from datetime import UTC, datetime, timedelta
>>> detector = build_novelty({"min_count": 50, "window": "1h", "warmup": "1d"})
>>> start = datetime(2025, 1, 1, tzinfo=UTC)
>>> for hour in range(25):
...     for segment in ("free", "pro"):
...         _ = detector.observe(segment, 120, start + timedelta(hours=hour))
>>> detector.observe("pro", 200, start + timedelta(hours=25)).is_anomalous
False
>>> detector.observe("edu", 30, start + timedelta(hours=25)).is_anomalous
False
>>> score = detector.observe("edu", 30, start + timedelta(hours=25, minutes=10))
>>> score.is_onset, score.detail
(True, "new value 'edu': 60 requests within 10m of first sighting (threshold 50 in 1h)")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple, Self

from detectors.base import Score, check_version, register
from detectors.params import Params
from detectors.rings import (
    earliest,
    epoch_s,
    format_span,
    is_new_incident,
    is_usable,
    latest_anomalous,
)


class Sighting(NamedTuple):
    """What is remembered per label value."""

    first_seen_s: float
    last_seen_s: float
    volume: float
    """Requests since the first sighting while the value is new."""
    is_known: bool
    has_fired: bool


class NoveltyConfig(NamedTuple):
    min_count: int
    window_s: float
    warmup_s: float
    max_values: int
    forget_after_s: float


@dataclass(frozen=True, slots=True)
class NoveltyState:
    version: int
    config: NoveltyConfig
    first_at_s: float | None
    last_anomalous_at_s: float | None
    values: tuple[tuple[str, Sighting], ...]
    """Least recently seen first."""


def _show(label: str) -> str:
    return repr(label if len(label) <= 60 else label[:57] + "...")


class Novelty:
    """New label values that reach a volume, with a bounded, aging memory of known values."""

    kind: ClassVar[str] = "novelty"
    VERSION: ClassVar[int] = 1

    def __init__(self, config: NoveltyConfig, state: NoveltyState | None = None) -> None:
        self.config = config
        self._first_at_s = state.first_at_s if state else None
        self._last_anomalous_at_s = state.last_anomalous_at_s if state else None
        # A dict keeps insertion order: re-inserting on each sighting makes it an LRU.
        self._values: dict[str, Sighting] = dict(state.values) if state else {}

    def _is_ready(self, at_s: float) -> bool:
        return self._first_at_s is not None and at_s - self._first_at_s >= self.config.warmup_s

    def _current(self, label: str, at_s: float) -> Sighting | None:
        """The remembered sighting, None if never seen or forgotten; a new value whose window
        has passed is known by now."""
        seen = self._values.get(label)
        config = self.config
        if seen is None or at_s - seen.last_seen_s > config.forget_after_s:
            return None
        if not seen.is_known and at_s - seen.first_seen_s > config.window_s:
            return seen._replace(is_known=True)
        return seen

    def observe(self, label: str, count: int, at: datetime) -> Score | None:
        """Score `count` requests with value `label` in the window ending at `at`, then learn
        them. No requests (count <= 0) is no sighting: None, nothing learned."""
        if count <= 0:
            return None
        at_s = epoch_s(at)
        verdict = self._judge(label, count, at_s)
        self._remember(label, count, at_s)
        return verdict

    def _judge(self, label: str, count: int, at_s: float) -> Score | None:
        if not self._is_ready(at_s):
            return None
        config = self.config
        seen = self._current(label, at_s)
        if seen is not None and seen.is_known:
            return Score(value=float(count), baseline=float(config.min_count), spread=0.0,
                         anomaly=0.0, is_anomalous=False, is_onset=False, detector=self.kind,
                         detail=f"{_show(label)} is a known value")
        volume = count + (seen.volume if seen else 0.0)
        age_s = at_s - seen.first_seen_s if seen else 0.0
        anomalous = volume >= config.min_count
        return Score(
            value=volume, baseline=float(config.min_count), spread=0.0,
            anomaly=min(1.0, volume / config.min_count), is_anomalous=anomalous,
            is_onset=anomalous and not (seen and seen.has_fired), detector=self.kind,
            detail=(f"new value {_show(label)}: {volume:.0f} requests within "
                    f"{format_span(age_s)} of first sighting (threshold {config.min_count} "
                    f"in {format_span(config.window_s)})"))

    def _remember(self, label: str, count: int, at_s: float) -> None:
        config = self.config
        self._first_at_s = earliest(self._first_at_s, at_s)
        seen = self._current(label, at_s)
        self._values.pop(label, None)
        if seen is None:
            known = not self._is_ready(at_s)
            seen = Sighting(at_s, at_s, float(count), known, count >= config.min_count)
        elif seen.is_known:
            seen = seen._replace(last_seen_s=max(seen.last_seen_s, at_s))
        else:
            volume = seen.volume + count
            seen = seen._replace(last_seen_s=max(seen.last_seen_s, at_s), volume=volume,
                                 has_fired=seen.has_fired or volume >= config.min_count)
        self._values[label] = seen
        while self._values:
            oldest = next(iter(self._values))
            if (len(self._values) <= config.max_values
                    and at_s - self._values[oldest].last_seen_s <= config.forget_after_s):
                break
            del self._values[oldest]

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        """Scalar form: `value` is the window volume of a value not seen before."""
        at_s = epoch_s(at)
        if not self._is_ready(at_s) or not is_usable(value, 1):
            return None
        config = self.config
        anomalous = value >= config.min_count
        return Score(
            value=value, baseline=float(config.min_count), spread=0.0,
            anomaly=min(1.0, max(0.0, value / config.min_count)), is_anomalous=anomalous,
            is_onset=is_new_incident(anomalous, at_s, self._last_anomalous_at_s,
                                     config.window_s),
            detector=self.kind,
            detail=(f"{value:.0f} requests from unseen values (threshold {config.min_count} "
                    f"in {format_span(config.window_s)})"))

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        if not is_usable(value, 1):
            return
        at_s = epoch_s(at)
        score = self.score(value, at, n=n)
        self._last_anomalous_at_s = latest_anomalous(score, at_s, self._last_anomalous_at_s)
        self._first_at_s = earliest(self._first_at_s, at_s)

    def snapshot(self) -> NoveltyState:
        return NoveltyState(self.VERSION, self.config, self._first_at_s,
                            self._last_anomalous_at_s, tuple(self._values.items()))

    @classmethod
    def restore(cls, state: NoveltyState) -> Self:
        check_version(cls.kind, state.version, cls.VERSION)
        return cls(state.config, state)


@register("novelty", example={"min_count": 20, "window": "10m", "warmup": "30m"})
def build_novelty(raw: Mapping[str, Any]) -> Novelty:
    params = Params(raw, "novelty")
    window = params.duration("window", default="1h", low=timedelta(seconds=1),
                             high=timedelta(days=30))
    config = NoveltyConfig(
        min_count=params.integer("min_count", default=50, low=1),
        window_s=window.total_seconds(),
        warmup_s=params.duration("warmup", default="1d", high=timedelta(days=90))
        .total_seconds(),
        max_values=params.integer("max_values", default=1_000, low=10, high=1_000_000),
        forget_after_s=params.duration("forget_after", default="30d", low=window)
        .total_seconds())
    params.done()
    return Novelty(config)
