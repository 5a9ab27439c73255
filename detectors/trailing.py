"""What the trailing-window detectors (ratio, percentile) share: a `TimeRing` of buckets over
the window, the incident behind `Score.is_onset`, the learn gate (too few samples, non-finite
values and, unless `learn_anomalies`, anomalous points stay out of the window) and the
parameters common to both. Each detector keeps its own per-bucket data and snapshot type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple, Protocol

from detectors.base import Score
from detectors.moments import Incident, TimeRing
from detectors.params import Params


class TrailingConfig(Protocol):
    """The configuration fields `TrailingWindow` reads."""

    @property
    def window_s(self) -> float: ...
    @property
    def min_samples(self) -> int: ...
    @property
    def cooldown(self) -> int: ...
    @property
    def learn_anomalies(self) -> bool: ...


class TrailingParams(NamedTuple):
    """The trailing-window parameters after the detector's own, as config keyword arguments."""

    min_coverage: float
    learn_anomalies: bool
    cooldown: int
    min_samples: int


def window_params(p: Params, raw: Mapping[str, Any], name: str) -> tuple[float, str]:
    """The window parameter `name` (1 minute to 365 days, default 1d): (seconds, as written)."""
    window = p.duration(name, default="1d", low=timedelta(minutes=1), high=timedelta(days=365))
    return window.total_seconds(), str(raw.get(name, "1d"))


def trailing_params(p: Params) -> dict[str, Any]:
    """min_coverage, learn_anomalies, cooldown and min_samples, read in that order (the first
    bad one is the one reported)."""
    return TrailingParams(
        min_coverage=p.number("min_coverage", default=0.5, low=0.0, high=1.0,
                              low_inclusive=False),
        learn_anomalies=p.flag("learn_anomalies", default=False),
        cooldown=p.integer("cooldown", default=5, low=1, high=1_000_000),
        min_samples=p.integer("min_samples", default=1, low=0),
    )._asdict()


class TrailingWindow:
    """Base of a detector over a trailing window kept as a `TimeRing` of per-slot data."""

    kind: ClassVar[str]
    config: TrailingConfig
    _ring: TimeRing
    _incident: Incident

    def __init__(self, config: TrailingConfig) -> None:
        self.config = config
        self.rebaseline()

    def rebaseline(self) -> None:
        """Forget the window and warm up again (a deploy changed the model or prompt)."""
        self._ring = TimeRing.empty(self.config.window_s)
        self._incident = Incident()
        self._reset()

    def _reset(self) -> None:
        """Empty the per-slot data for a new ring."""
        raise NotImplementedError

    def _clear(self, slot: int) -> None:
        """Empty one slot before it takes a newer bucket."""
        raise NotImplementedError

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        raise NotImplementedError

    def _is_scored(self, value: float, n: int) -> bool:
        """Too few samples and non-finite values are neither scored nor learned."""
        return n >= self.config.min_samples and math.isfinite(value)

    def _slot_to_learn(self, value: float, at: datetime, n: int) -> int | None:
        """Score the point (moving the incident on) and claim its ring slot, emptied if it held
        an older bucket; None when the point stays out of the window."""
        if not self._is_scored(value, n):
            return None
        score = self.score(value, at, n=n)
        is_anomalous = score is not None and score.is_anomalous
        if score is not None:
            self._incident.observe(is_anomalous, cooldown=self.config.cooldown)
        if is_anomalous and not self.config.learn_anomalies:
            return None
        claimed = self._ring.claim(at.timestamp())
        if claimed is None:  # older than the window the ring now holds
            return None
        slot, is_stale = claimed
        if is_stale:
            self._clear(slot)
        return slot

    def _load(self, bucket_ids: tuple[int | None, ...], incident_open: bool,
              normal_run: int) -> None:
        """The ring and incident of a snapshot (the caller loads its per-slot data)."""
        self._ring.ids = list(bucket_ids)
        self._incident = Incident(incident_open, normal_run)
