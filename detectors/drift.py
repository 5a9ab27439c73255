"""Drift detector: has the recent mean moved more than `drop` away from its trailing 7-day mean?

In: one value per evaluation step (e.g. a window's mean quality score) and `n`, the requests
behind it. Out: a `Score` whose value is the recent window's mean, compared with the 7-day mean.

The test is one-sided Welch's t on streaming moments. For direction "down" the null hypothesis
is "recent mean >= (1 - drop) x baseline"; it fires when that is rejected at `confidence`, i.e.
the upper confidence bound of recent - (1 - drop) x baseline is below zero (the baseline's own
uncertainty is included), and at least `min_samples` requests are behind the recent window. So a
handful of bad scores cannot trigger it, and a big sample with a 9% drop does not either.
Score: value = recent mean (with the scored point), baseline = 7-day mean, spread = standard
error of the tested difference, anomaly = 1 - p. An incident ends after `cooldown` without an
anomalous point.

State: `baseline` split into 168 buckets (hourly for 7 days) and `recent` into 15 buckets, each
holding (points, weight, mean, M2) — no raw samples. The baseline is the 168 buckets that end
before the recent window starts, so an ongoing drift is not compared with itself. Points scored
anomalous are kept out of the baseline (not out of the recent window) unless `learn_anomalies`;
a drift that lasts longer than `baseline` therefore ages the old baseline out, the detector
warms up again and then accepts the new level.

>>> from datetime import UTC, datetime, timedelta
>>> detector = build_drift({"baseline": "1d", "recent": "1h", "warmup": "1d"})
>>> start = datetime(2025, 1, 1, tzinfo=UTC)
>>> for minute in range(24 * 60):
...     detector.learn(0.84 + 0.02 * (minute % 3 - 1), start + timedelta(minutes=minute), n=5)
>>> for minute in range(24 * 60, 25 * 60):  # an hour with quality 15% lower
...     at = start + timedelta(minutes=minute)
...     score = detector.score(0.71 + 0.02 * (minute % 3 - 1), at, n=5)
...     assert score is not None
...     detector.learn(0.71 + 0.02 * (minute % 3 - 1), at, n=5)
>>> score.is_anomalous, score.detail
(True, 'mean 0.71 vs 1d mean 0.84 (-15%, n=300, p<0.001)')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple, Self

from detectors.base import Score, check_version, register
from detectors.params import Params
from detectors.rings import (
    BucketRing,
    Direction,
    Moments,
    RingState,
    Welch,
    earliest,
    epoch_s,
    format_p,
    format_span,
    is_new_incident,
    is_usable,
    latest_anomalous,
    p_value,
    parse_direction,
    relative_change,
    welch,
)

BASELINE_BUCKETS = 168
RECENT_BUCKETS = 15


class DriftConfig(NamedTuple):
    baseline_s: float
    recent_s: float
    drop: float
    direction: Direction
    min_samples: int
    confidence: float
    warmup_s: float
    cooldown_s: float
    learn_anomalies: bool


@dataclass(frozen=True, slots=True)
class DriftState:
    version: int
    config: DriftConfig
    first_at_s: float | None
    last_anomalous_at_s: float | None
    baseline: RingState
    recent: RingState


class Drift:
    """Recent-window mean vs trailing baseline mean, relative change with a confidence bound."""

    kind: ClassVar[str] = "drift"
    VERSION: ClassVar[int] = 1

    def __init__(self, config: DriftConfig, state: DriftState | None = None) -> None:
        self.config = config
        width = config.baseline_s / BASELINE_BUCKETS
        # Extra slots keep a full baseline behind the recent window and the partial bucket.
        slots = BASELINE_BUCKETS + math.ceil(config.recent_s / width) + 1
        self._baseline = BucketRing(width, slots, state.baseline if state else None)
        self._recent = BucketRing(config.recent_s / RECENT_BUCKETS, RECENT_BUCKETS,
                                  state.recent if state else None)
        self._first_at_s = state.first_at_s if state else None
        self._last_anomalous_at_s = state.last_anomalous_at_s if state else None

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        at_s = epoch_s(at)
        config = self.config
        if self._first_at_s is None or at_s - self._first_at_s < config.warmup_s:
            return None
        cut = self._baseline.bucket_id(at_s - config.recent_s)
        base = self._baseline.window(cut - BASELINE_BUCKETS, cut - 1)
        if base.points < 2 or base.weight < config.min_samples:
            return None
        now = self._recent.bucket_id(at_s)
        recent = self._recent.window(now - RECENT_BUCKETS + 1, now)
        if is_usable(value, n):
            recent = recent.merged(Moments.of(value, n))
        if recent.points == 0:
            return None
        return self._verdict(recent, base, at_s)

    def _verdict(self, recent: Moments, base: Moments, at_s: float) -> Score:
        config = self.config
        p, test = self._test(recent, base)
        enough = recent.weight >= config.min_samples
        anomalous = enough and p < 1.0 - config.confidence
        change = relative_change(recent.mean, base.mean)
        evidence = (f"n={recent.weight:.0f}, {format_p(p)}" if enough else
                    f"n={recent.weight:.0f} < min_samples {config.min_samples}")
        return Score(
            value=recent.mean, baseline=base.mean, spread=test.se,
            anomaly=1.0 - p, is_anomalous=anomalous,
            is_onset=is_new_incident(anomalous, at_s, self._last_anomalous_at_s,
                                     config.cooldown_s),
            detector=self.kind,
            detail=(f"mean {recent.mean:.3g} vs {format_span(config.baseline_s)} mean "
                    f"{base.mean:.3g} ({change:+.0%}, {evidence})"))

    def _test(self, recent: Moments, base: Moments) -> tuple[float, Welch]:
        """p-value that the recent mean lies beyond the `drop` band around the baseline."""
        config = self.config
        sign = 1.0 if base.mean >= 0 else -1.0  # the band is relative to |baseline|
        sides: tuple[tuple[Direction, float], ...] = (("down", -1.0), ("up", 1.0))
        tests: list[tuple[float, Welch]] = []
        for side, factor in sides:
            if config.direction in (side, "both"):
                test = welch(recent, base, scale_b=1.0 + factor * sign * config.drop)
                tests.append((p_value(test.t, test.df, side), test))
        # "both" runs two one-sided tests, so each gets half the error budget (Bonferroni).
        p, test = min(tests, key=lambda pair: pair[0])
        return min(1.0, len(tests) * p), test

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        if not is_usable(value, n):
            return
        at_s = epoch_s(at)
        score = self.score(value, at, n=n)
        self._last_anomalous_at_s = latest_anomalous(score, at_s, self._last_anomalous_at_s)
        self._first_at_s = earliest(self._first_at_s, at_s)
        self._recent.add(value, at_s, n)
        if score is None or not score.is_anomalous or self.config.learn_anomalies:
            self._baseline.add(value, at_s, n)

    def snapshot(self) -> DriftState:
        return DriftState(self.VERSION, self.config, self._first_at_s, self._last_anomalous_at_s,
                          self._baseline.state(), self._recent.state())

    @classmethod
    def restore(cls, state: DriftState) -> Self:
        check_version(cls.kind, state.version, cls.VERSION)
        return cls(state.config, state)


@register("drift", example={"baseline": "1d", "recent": "15m", "drop": 0.1, "min_samples": 10,
                            "warmup": "1h"})
def build_drift(raw: Mapping[str, Any]) -> Drift:
    params = Params(raw, "drift")
    baseline = params.duration("baseline", default="7d", low=timedelta(hours=1),
                               high=timedelta(days=90))
    recent = params.duration("recent", default="1h", low=timedelta(minutes=1),
                             high=baseline / 4)
    direction = parse_direction(params, default="down")
    config = DriftConfig(
        baseline_s=baseline.total_seconds(), recent_s=recent.total_seconds(),
        # A fall of 100% or more would put the band at or below zero: never reachable.
        drop=params.number("drop", default=0.10, low=0.0, low_inclusive=False,
                           high=10.0 if direction == "up" else 0.99),
        direction=direction,
        min_samples=params.integer("min_samples", default=30, low=2),
        confidence=params.number("confidence", default=0.95, low=0.5, high=0.9999),
        warmup_s=params.duration("warmup", high=baseline, default=format_span(
            min(86400.0, baseline.total_seconds()))).total_seconds(),
        cooldown_s=params.duration("cooldown", default="1h").total_seconds(),
        learn_anomalies=params.flag("learn_anomalies", default=False))
    params.done()
    return Drift(config)
