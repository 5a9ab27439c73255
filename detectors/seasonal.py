"""Seasonal components for the zscore detector (detect stage).

In: a value with its event time. Out: what a point at that time should be compared with.

- `Profile`: seasonal offsets on an hour-of-day (24 slots) or hour-of-week (168 slots)
  cycle, read and learned by linear interpolation between neighbouring slots (slot h stands
  for h:00, so 14:45 is 1/4 slot 14 and 3/4 slot 15): a per-minute series gets a smooth
  profile, an hourly one exactly one slot per point. Each slot is a time-decayed mean of what
  was learned near it, weighted by closeness; a slot never learned counts as 0. State: two
  floats per slot (24 or 168) and two timestamps, whatever the traffic.
- `SeasonalBaseline`: a global EW baseline plus, with seasonality, one per hour slot, blended
  with its neighbours until the slot has enough weight (the zscore detector keeps its
  residual spread per hour of day with it).

>>> profile = Profile.empty("hour_of_day")
>>> from datetime import UTC, datetime
>>> profile.position(datetime(2025, 1, 6, 9, 45, tzinfo=UTC))
(9, 0.75)
>>> profile.learn(9, 0.0, 4.0, 0.0, half_life_s=7 * 86400)
>>> profile.learn(10, 0.0, 8.0, 60.0, half_life_s=7 * 86400)
>>> profile.offset(9, 0.75)
7.0
>>> baseline = SeasonalBaseline.empty("hour_of_day", half_life_s=7 * 86400, slot_warmup=5)
>>> baseline.slot_of(datetime(2025, 1, 6, 9, 30, tzinfo=UTC), UTC)
9
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from detectors.moments import EWStats, Location, StatsData, mix

SEASONALITIES = ("none", "hour_of_day", "hour_of_week")
_SLOT_COUNT = {"none": 0, "hour_of_day": 24, "hour_of_week": 168}
_RESCALE_AT = 1e100  # profile weights are rescaled before they overflow

ProfileData = tuple[tuple[float, ...], tuple[float, ...], float | None, float | None]


def local_time(at: datetime, zone: tzinfo) -> datetime:
    """`at` in local time of `zone` (a naive `at` is taken as UTC)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(zone)


def slot_of(at: datetime, seasonality: str, zone: tzinfo) -> int:
    """The slot of `at` in local time of `zone` (a naive `at` is taken as UTC); 0 without
    seasonality."""
    if seasonality == "none":
        return 0
    local = local_time(at, zone)
    if seasonality == "hour_of_day":
        return local.hour
    return local.weekday() * 24 + local.hour


@dataclass(slots=True)
class Profile:
    """Seasonal offsets on a cycle of hour slots (see the module docstring).

    Weights decay with event time without touching every slot: a point learned at time t
    weighs 2^((t - origin) / half-life) in `weights` (all slots share `origin`), so every
    slot is the time-decayed mean of what it learned, however long ago it was last visited.
    Everything is rescaled before the numbers overflow. Out-of-order points count as "now".
    """

    values: list[float]
    weights: list[float]
    origin_s: float | None = None
    latest_s: float | None = None

    @classmethod
    def empty(cls, seasonality: str) -> Profile:
        count = _SLOT_COUNT[seasonality]
        return cls([0.0] * count, [0.0] * count)

    def position(self, local: datetime) -> tuple[int, float]:
        """(slot at or before the local time `local`, fraction of the way to the next);
        (0, 0.0) without slots."""
        if not self.values:
            return 0, 0.0
        hours = local.hour + (local.minute * 60 + local.second
                              + local.microsecond / 1e6) / 3600
        if len(self.values) > 24:
            hours += local.weekday() * 24
        slot = math.floor(hours)
        return slot % len(self.values), hours - slot

    def offset(self, slot: int, fraction: float) -> float:
        """The offset at `fraction` of the way from `slot` to the next (0 without slots; a
        slot never learned counts as 0)."""
        if not self.values:
            return 0.0
        here = self.values[slot]
        if fraction <= 0.0:
            return here
        return here + fraction * (self.values[(slot + 1) % len(self.values)] - here)

    def learn(self, slot: int, fraction: float, target: float, at_s: float, *,
              half_life_s: float, weight: float = 1.0) -> None:
        """Move the two slots around the point towards `target` (y minus everything else),
        each in proportion to its interpolation share: a time-decayed kernel mean."""
        if self.origin_s is None:
            self.origin_s = at_s
        self.latest_s = at_s if self.latest_s is None else max(self.latest_s, at_s)
        growth = 2.0 ** ((self.latest_s - self.origin_s) / half_life_s)
        for index, share in ((slot, 1.0 - fraction),
                             ((slot + 1) % len(self.values), fraction)):
            if share <= 0.0:
                continue
            added = share * weight * growth
            self.weights[index] += added
            self.values[index] += added / self.weights[index] * (target - self.values[index])
        if growth > _RESCALE_AT:
            self.weights = [w / growth for w in self.weights]
            self.origin_s = self.latest_s

    def export(self) -> ProfileData:
        return tuple(self.values), tuple(self.weights), self.origin_s, self.latest_s

    @classmethod
    def load(cls, data: ProfileData) -> Profile:
        values, weights, origin_s, latest_s = data
        return cls(list(values), list(weights), origin_s, latest_s)


@dataclass(slots=True)
class SeasonalBaseline:
    """A global EW baseline plus, with seasonality, one per slot.

    A slot is trusted in proportion to its own decayed weight until that reaches `slot_warmup`
    points. Until then it is blended (as a mixture, see `mix`) with a prior: half the previous
    slot, half the global baseline. The previous slot keeps a ramp continuous in the first
    days, when no slot has history yet; the global baseline keeps the band wide where the two
    disagree. Slot weights decay with event time, so a slot last seen weeks ago leans on its
    neighbours again.
    """

    seasonality: str
    half_life_s: float
    slot_warmup: float
    overall: EWStats
    slots: list[EWStats]

    @classmethod
    def empty(cls, seasonality: str, *, half_life_s: float,
              slot_warmup: float) -> SeasonalBaseline:
        slots = [EWStats() for _ in range(_SLOT_COUNT[seasonality])]
        return cls(seasonality, half_life_s, slot_warmup, EWStats(), slots)

    def slot_of(self, at: datetime, zone: tzinfo) -> int:
        return slot_of(at, self.seasonality, zone)

    def _trust(self, stats: EWStats, at_s: float) -> float:
        return min(stats.weight_at(at_s, self.half_life_s) / self.slot_warmup, 1.0)

    def location(self, slot: int, at_s: float, *, robust: bool) -> tuple[Location, float]:
        """The baseline for a point in `slot` at `at_s`, and how much of it is the slot's own
        (1.0 without seasonality)."""
        overall = self.overall.location(robust=robust)
        if not self.slots:
            return overall, 1.0
        own = self.slots[slot]
        previous = self.slots[slot - 1]  # slot 0 wraps to the last slot of the period
        prior = mix(previous.location(robust=robust), overall,
                    0.5 * self._trust(previous, at_s))
        trust = self._trust(own, at_s)
        return mix(own.location(robust=robust), prior, trust), trust

    def overall_level(self, *, robust: bool) -> float:
        return self.overall.median if robust else self.overall.mean

    def update(self, value: float, slot: int, at_s: float) -> None:
        self.overall.update(value, at_s, half_life_s=self.half_life_s)
        if self.slots:
            self.slots[slot].update(value, at_s, half_life_s=self.half_life_s)

    def shift(self, offset: float, *, min_variance: float) -> None:
        """Accept a level shift: move every baseline by `offset`, keeping the seasonal shape
        (and widen each spread to at least `min_variance`)."""
        self.overall.shift(offset, min_variance=min_variance)
        for stats in self.slots:
            stats.shift(offset, min_variance=min_variance)

    def export(self) -> tuple[StatsData, tuple[StatsData, ...]]:
        return self.overall.export(), tuple(s.export() for s in self.slots)

    @classmethod
    def load(cls, seasonality: str, *, half_life_s: float, slot_warmup: float,
             overall: StatsData, slots: tuple[StatsData, ...]) -> SeasonalBaseline:
        return cls(seasonality, half_life_s, slot_warmup, EWStats.load(overall),
                   [EWStats.load(s) for s in slots])
