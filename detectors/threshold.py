"""Fixed-bound detector (detect stage): a value against a bound from alerts.toml.

In: one value per series per step (rules use it for `when = "> 0.05"`). Out: a `Score` with
`anomaly = 1` when the bound is breached, else exp(-distance / |bound|) in [0, 1): how close
the value came. Ready from the first point; the only state is the incident behind `is_onset`.

>>> from datetime import UTC, datetime
>>> detector = _build({"op": ">", "value": 0.05})
>>> at = datetime(2025, 1, 6, tzinfo=UTC)
>>> score = detector.score(0.08, at)
>>> score.is_anomalous, score.anomaly, score.is_onset
(True, 1.0, True)
>>> round(detector.score(0.04, at).anomaly, 3)
0.819
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from detectors.base import DetectorConfigError, Score, check_version, register
from detectors.moments import Incident
from detectors.params import Params

VERSION = 1
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
# The largest anomaly a point that does not breach can get, so 1.0 always means "breached".
_BELOW_ONE = math.nextafter(1.0, 0.0)


@dataclass(frozen=True, slots=True)
class ThresholdConfig:
    op: str
    bound: float
    cooldown: int
    min_samples: int


@dataclass(frozen=True, slots=True)
class ThresholdState:
    version: int
    config: ThresholdConfig
    incident_open: bool
    normal_run: int


class Threshold:
    """Compares each value with a fixed bound; no warm-up, no baseline to learn."""

    kind: ClassVar[str] = "threshold"

    def __init__(self, config: ThresholdConfig) -> None:
        if config.op not in _OPERATORS:
            raise DetectorConfigError(
                f"detector threshold: op is {config.op!r}; expected one of {', '.join(_OPERATORS)}")
        if not math.isfinite(config.bound):
            raise DetectorConfigError(
                f"detector threshold: value is {config.bound}; expected a finite number")
        self.config = config
        self._breaches = _OPERATORS[config.op]
        self._incident = Incident()

    def _closeness(self, value: float) -> float:
        scale = abs(self.config.bound) or 1.0
        return min(math.exp(-abs(value - self.config.bound) / scale), _BELOW_ONE)

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        if n < self.config.min_samples or math.isnan(value):
            return None
        is_breached = self._breaches(value, self.config.bound)
        return Score(
            value=value, baseline=self.config.bound, spread=0.0,
            anomaly=1.0 if is_breached else self._closeness(value),
            is_anomalous=is_breached, is_onset=self._incident.is_onset(is_breached),
            detector=self.kind,
            detail=f"{value:.6g} {self.config.op} {self.config.bound:.6g} is "
                   f"{'true' if is_breached else 'false'}")

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        if n < self.config.min_samples or math.isnan(value):
            return
        self._incident.observe(self._breaches(value, self.config.bound),
                               cooldown=self.config.cooldown)

    def snapshot(self) -> ThresholdState:
        return ThresholdState(VERSION, self.config, self._incident.is_open,
                              self._incident.normal_run)

    @classmethod
    def restore(cls, state: ThresholdState) -> Self:
        check_version(cls.kind, state.version, VERSION)
        detector = cls(state.config)
        detector._incident = Incident(state.incident_open, state.normal_run)
        return detector


@register("threshold", example={"op": ">", "value": 0.05})
def _build(params: Mapping[str, Any]) -> Threshold:
    if "value" not in params:
        raise DetectorConfigError(
            "detector threshold: value is missing; expected the bound, e.g. value = 0.05")
    p = Params(params, "threshold")
    config = ThresholdConfig(
        op=p.choice("op", default=">", allowed=tuple(_OPERATORS)),
        bound=p.number("value", default=math.nan),
        cooldown=p.integer("cooldown", default=1, low=1, high=1_000_000),
        min_samples=p.integer("min_samples", default=1, low=0),
    )
    p.done()
    return Threshold(config)
