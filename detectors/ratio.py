"""Ratio-to-baseline detector (detect stage): a value against `factor` x its trailing mean.

In: one value per series per step with its sample size `n`. Out: a `Score` comparing the value
with the n-weighted mean of the trailing `baseline` window (per-request mean when values are
window averages), or None until that window is `min_coverage` covered. The window is a ring of
hourly (or, for short windows, finer) sums and weights: bounded state, no samples.
Anomalous points stay out of the baseline (`learn_anomalies = false`).

>>> from datetime import UTC, datetime, timedelta
>>> detector = _build({"baseline": "1d", "factor": 2.0})
>>> start = datetime(2025, 1, 6, tzinfo=UTC)
>>> for hour in range(13):
...     detector.learn(0.01, start + timedelta(hours=hour), n=40)
>>> score = detector.score(0.025, start + timedelta(hours=13))
>>> score.is_anomalous, round(score.baseline, 4), score.detail
(True, 0.01, '0.025 is 2.50x the 1d mean 0.01 (limit 2x up)')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from detectors.base import Score, check_version, register
from detectors.moments import closeness
from detectors.params import Params
from detectors.trailing import TrailingWindow, trailing_params, window_params

VERSION = 1
DIRECTIONS = ("up", "down", "both")


@dataclass(frozen=True, slots=True)
class RatioConfig:
    factor: float
    window_s: float
    window: str
    direction: str
    min_coverage: float
    learn_anomalies: bool
    cooldown: int
    min_samples: int


@dataclass(frozen=True, slots=True)
class RatioState:
    version: int
    config: RatioConfig
    bucket_ids: tuple[int | None, ...]
    sums: tuple[float, ...]
    weights: tuple[float, ...]
    incident_open: bool
    normal_run: int


class Ratio(TrailingWindow):
    """Compares each value with `factor` x the trailing window's mean."""

    kind: ClassVar[str] = "ratio"
    config: RatioConfig

    def _reset(self) -> None:
        self._sums = [0.0] * len(self._ring.ids)
        self._weights = [0.0] * len(self._ring.ids)

    def _clear(self, slot: int) -> None:
        self._sums[slot], self._weights[slot] = 0.0, 0.0

    def baseline(self, at: datetime) -> float | None:
        """The n-weighted mean of the trailing window, or None while it is not covered."""
        at_s = at.timestamp()
        slots = self._ring.window(at_s)
        weight = sum(self._weights[slot] for slot in slots)
        if weight <= 0 or self._ring.coverage(at_s, slots, self.config.window_s) < (
                self.config.min_coverage):
            return None
        return sum(self._sums[slot] for slot in slots) / weight

    def _breaches(self, value: float, baseline: float) -> tuple[bool, float]:
        c = self.config
        up = closeness(value, baseline, c.factor) if c.direction != "down" else 0.0
        if c.direction == "up":
            return value > c.factor * baseline, up
        down = closeness(baseline, value, c.factor) if value > 0 else 1.0
        if c.direction == "down":
            return value < baseline / c.factor, down
        return value > c.factor * baseline or value < baseline / c.factor, max(up, down)

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        """None while warming up, for n < min_samples, and when the baseline is not positive
        (a ratio to zero or less means nothing)."""
        if not self._is_scored(value, n):
            return None
        baseline = self.baseline(at)
        if baseline is None or baseline <= 0:
            return None
        c = self.config
        is_anomalous, anomaly = self._breaches(value, baseline)
        return Score(
            value=value, baseline=baseline,
            spread=(c.factor - 1) * baseline if c.direction != "down"
            else baseline - baseline / c.factor,
            anomaly=anomaly, is_anomalous=is_anomalous,
            is_onset=self._incident.is_onset(is_anomalous), detector=self.kind,
            detail=f"{value:.6g} is {value / baseline:.2f}x the {c.window} mean "
                   f"{baseline:.6g} (limit {c.factor:g}x {c.direction})")

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        slot = self._slot_to_learn(value, at, n)
        if slot is None:
            return
        self._sums[slot] += value * n
        self._weights[slot] += n

    def snapshot(self) -> RatioState:
        return RatioState(VERSION, self.config, tuple(self._ring.ids), tuple(self._sums),
                          tuple(self._weights), self._incident.is_open,
                          self._incident.normal_run)

    @classmethod
    def restore(cls, state: RatioState) -> Self:
        check_version(cls.kind, state.version, VERSION)
        detector = cls(state.config)
        detector._load(state.bucket_ids, state.incident_open, state.normal_run)
        detector._sums, detector._weights = list(state.sums), list(state.weights)
        return detector


@register("ratio", example={"baseline": "1d", "factor": 2.0})
def _build(params: Mapping[str, Any]) -> Ratio:
    p = Params(params, "ratio")
    window_s, window = window_params(p, params, "baseline")
    config = RatioConfig(
        factor=p.number("factor", default=2.0, low=1.0, high=1e6, low_inclusive=False),
        window_s=window_s, window=window,
        direction=p.choice("direction", default="up", allowed=DIRECTIONS),
        **trailing_params(p),
    )
    p.done()
    return Ratio(config)
