"""Streaming statistics shared by the point detectors (detect stage).

In: one value at a time with its event time in epoch seconds. Out: a running location and
spread (time-decayed mean/variance and median/MAD trackers), a decayed histogram of past
z-scores for calibration, and the incident run-length behind onset de-duplication. Every
piece of state is a handful of floats, exported as tuples for snapshots; nothing keeps samples.

>>> stats = EWStats()
>>> for t, x in enumerate([10.0, 12.0, 11.0, 13.0]):
...     stats.update(x, float(t), half_life_s=1e9)
>>> round(stats.mean, 6), round(stats.variance, 6)
(11.5, 1.25)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

# Median and MAD trackers (Robbins-Monro stochastic approximation). With step rate * c * s, the
# expected move of a tracker equals an EW mean update at that rate for Gaussian data:
# E[sign(x - m)] = sqrt(2/pi)(mu - m)/sd near the median, and
# E[sign(|x - m| - d)] = 1.2712(mad - d)/sd near the MAD.
_MEDIAN_STEP = math.sqrt(math.pi / 2)
_MAD_STEP = 1 / 1.2712
MAD_TO_SIGMA = 1.4826  # sd = 1.4826 * MAD for a normal distribution


StatsData = tuple[float, float, float, float, float, float, float | None]


def decay(elapsed_s: float, half_life_s: float) -> float:
    """Weight left of a point `elapsed_s` old: 1 now, 1/2 after one half-life (never > 1)."""
    return 1.0 if elapsed_s <= 0 else 2.0 ** (-elapsed_s / half_life_s)


def normal_tail(z: float) -> float:
    """P(Z > z) for a standard normal, accurate far into the tail."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def t_to_z(t: float, dof: float) -> float:
    """The standard-normal z with the same tail probability as Student's t with `dof` degrees
    of freedom (Wallace 1959; within 1-3% of the exact value for dof >= 3, even far out), so a
    spread estimated from a few points does not page on ordinary noise."""
    if not math.isfinite(dof):
        return t
    dof = max(dof, 1.0)
    z = (8 * dof + 1) / (8 * dof + 3) * math.sqrt(dof * math.log1p(t * t / dof))
    return math.copysign(z, t)


def sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


@dataclass(frozen=True, slots=True)
class Location:
    """A baseline to compare a point with: a level and a variance around it."""

    level: float
    variance: float
    """Predictive variance of the next point."""
    count: float = math.inf
    """Effective number of points behind it (Student-t degrees of freedom + 1)."""


def mix(a: Location, b: Location, weight_a: float) -> Location:
    """The mixture of two baselines (law of total variance): `weight_a` of `a`, the rest `b`.

    Disagreement between the two widens the result, so a blend is never more confident than
    its parts.
    """
    if weight_a >= 1.0:
        return a
    if weight_a <= 0.0:
        return b
    level = weight_a * a.level + (1 - weight_a) * b.level
    gap = a.level - b.level
    variance = (weight_a * a.variance + (1 - weight_a) * b.variance
                + weight_a * (1 - weight_a) * gap * gap)
    return Location(level, variance, weight_a * a.count + (1 - weight_a) * b.count)


@dataclass(slots=True)
class EWStats:
    """Exponentially weighted statistics of one series, decayed by event time.

    A point weighs 1 when it arrives and loses half its weight every `half_life_s`. `mean`
    and `variance` are exactly the weighted mean and (population) variance of all points seen
    with those weights (West's weighted update); `median` and `mad` track the weighted median
    and median absolute deviation by stochastic approximation with step 1/weight, so they
    start as a running median and settle into an EW one. Out-of-order points are not decayed
    backwards: they count as "now".
    """

    weight: float = 0.0
    weight_sq: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    median: float = 0.0
    mad: float = 0.0
    last_s: float | None = None

    @property
    def variance(self) -> float:
        return max(self.m2 / self.weight, 0.0) if self.weight > 0 else 0.0

    def weight_at(self, at_s: float, half_life_s: float) -> float:
        """The total weight of the points seen, as of `at_s` (a freshness measure)."""
        if self.last_s is None:
            return 0.0
        return self.weight * decay(at_s - self.last_s, half_life_s)

    @property
    def effective_count(self) -> float:
        """Kish's effective sample size (sum of weights)^2 / sum of squared weights."""
        return self.weight * self.weight / self.weight_sq if self.weight_sq > 0 else 0.0

    def location(self, *, robust: bool) -> Location:
        """Level and predictive variance for the next point: the spread is widened by
        (k + 1) / (k - 1) for k effective points (Bessel's correction plus the uncertainty of
        the level), so a baseline of a few points is not overconfident."""
        k = max(self.effective_count, 1.5)
        widen = (k + 1) / (k - 1)
        if robust:
            scale = MAD_TO_SIGMA * self.mad
            return Location(self.median, scale * scale * widen, k)
        return Location(self.mean, self.variance * widen, k)

    def update(self, x: float, at_s: float, *, half_life_s: float) -> None:
        if self.last_s is None:
            self.weight, self.weight_sq, self.mean, self.m2 = 1.0, 1.0, x, 0.0
            self.median, self.mad, self.last_s = x, 0.0, at_s
            return
        kept = decay(at_s - self.last_s, half_life_s)
        self.last_s = max(self.last_s, at_s)
        self.weight = self.weight * kept + 1.0
        self.weight_sq = self.weight_sq * kept * kept + 1.0
        self.m2 *= kept
        delta = x - self.mean
        self.mean += delta / self.weight
        self.m2 = max(self.m2 + delta * (x - self.mean), 0.0)
        # The trackers step in units of their own scale, but never below half the EW standard
        # deviation: with step 1/n, a MAD that fell low early makes every later step tiny and
        # the trackers never recover (on 200 normal series of 4000 points the median ended up
        # to 2.9 sd off and the MAD 100% off; with the floor 0.015 sd and 4%). Outliers inflate
        # the EW deviation, so they only make steps larger, not the estimates biased.
        step_scale = max(MAD_TO_SIGMA * self.mad, 0.5 * math.sqrt(self.variance))
        rate = 1.0 / self.weight
        deviation = abs(x - self.median)
        self.median += rate * _MEDIAN_STEP * step_scale * sign(x - self.median)
        self.mad = max(self.mad + rate * _MAD_STEP * step_scale * sign(deviation - self.mad),
                       0.0)

    def shift(self, offset: float, *, min_variance: float = 0.0) -> None:
        """Move the level by `offset` (an accepted level shift), widening the spread to at
        least `min_variance` (the new level's own scatter)."""
        self.mean += offset
        self.median += offset
        if min_variance > self.variance and self.weight > 0:
            self.m2 = min_variance * self.weight
        if min_variance > (MAD_TO_SIGMA * self.mad) ** 2:
            self.mad = math.sqrt(min_variance) / MAD_TO_SIGMA

    def export(self) -> StatsData:
        return (self.weight, self.weight_sq, self.mean, self.m2, self.median, self.mad,
                self.last_s)

    @classmethod
    def load(cls, data: StatsData) -> EWStats:
        return cls(*data)


@dataclass(slots=True)
class ZHistogram:
    """Decayed histogram of signed z-scores, for per-series calibration.

    Bins of width 0.25 cover |z| in [0, 12) on each side, plus one overflow bin per side.
    Each added point weighs 2^(i / half_life_points) (i = points added so far) so older points
    fade without touching every bin; everything is rescaled when the weights grow large.
    """

    bins: list[float]
    total: float = 0.0
    increment: float = 1.0

    WIDTH = 0.25
    SIDE = 48  # finite bins per side; index SIDE is the overflow bin

    @classmethod
    def empty(cls) -> ZHistogram:
        return cls([0.0] * (2 * (cls.SIDE + 1)))

    def add(self, z: float, *, half_life_points: float) -> None:
        self.increment *= 2.0 ** (1.0 / half_life_points)
        offset = 0 if z >= 0 else self.SIDE + 1
        index = min(int(abs(z) / self.WIDTH), self.SIDE) if math.isfinite(z) else self.SIDE
        self.bins[offset + index] += self.increment
        self.total += self.increment
        if self.increment > 1e100:
            self.bins = [b / self.increment for b in self.bins]
            self.total /= self.increment
            self.increment = 1.0

    def tail_share(self, z: float) -> tuple[float, float]:
        """(weight of past points on z's side at least as far out as z, total weight).

        Within a bin the weight is assumed uniform; past the last edge it falls off as 12/|z|.
        """
        offset = 0 if z >= 0 else self.SIDE + 1
        distance = abs(z)
        overflow = self.bins[offset + self.SIDE]
        edge = self.SIDE * self.WIDTH
        if distance >= edge:
            share = overflow * edge / distance if math.isfinite(distance) else 0.0
            return share / self.increment, self.total / self.increment
        index = int(distance / self.WIDTH)
        inside = (index + 1) - distance / self.WIDTH
        share = self.bins[offset + index] * inside
        share += sum(self.bins[offset + index + 1: offset + self.SIDE + 1])
        return share / self.increment, self.total / self.increment

    def side_quantile(self, *, positive: bool, share: float) -> float:
        """The distance x on one side with `share` of all past weight beyond it (the inverse
        of `tail_share`)."""
        offset = 0 if positive else self.SIDE + 1
        target = share * self.total
        overflow = self.bins[offset + self.SIDE]
        if overflow >= target:
            return self.SIDE * self.WIDTH * overflow / target
        beyond = overflow
        for index in range(self.SIDE - 1, -1, -1):
            weight = self.bins[offset + index]
            if beyond + weight >= target:
                return (index + 1 - (target - beyond) / weight) * self.WIDTH
            beyond += weight
        return 0.0


# Calibration: the tail shape is measured as far out as the history supports (10 expected
# points beyond), but no farther than where the detector decides nor nearer than 0.5% of points
# on a side, and counts in proportion to its support (1000 points). Beyond that, the tail's
# steepness is measured between that share and 8 times it, and extrapolated.
_SHAPE_EXCEEDANCES = 10.0
_SHAPE_NEAREST_SHARE = 0.005
_SHAPE_PRIOR_POINTS = 1000.0
_SHAPE_SPAN = 8.0
_MAX_STEEPNESS = 3.0
_STANDARD_NORMAL = NormalDist()


def tail_factor(histogram: ZHistogram, *, positive: bool, decision_share: float) -> float:
    """How much to shrink z on one side so that the series' own tail on that side lands where
    a Gaussian's does: 1.0 for Gaussian (or lighter) tails, below 1 for heavy ones.

    The tails are matched at the share of points the history can vouch for (see above). When
    the detector decides farther out (`decision_share`, the one-sided tail), the tail is
    extrapolated as x(s) = x1 (g(s) / g1)^k, g being the Gaussian quantile: k = 1 for a
    Gaussian tail, larger for heavier ones (a Student t with 3 degrees of freedom is about
    2 around the 1/1000 point), measured between the share matched and 8 times it, and at most
    3. A linear extrapolation (k = 1) would let a heavy-tailed series page many times as often
    as a Gaussian one at a per-day band. Never above 1: calibration only ever makes a
    heavy-tailed series quieter; it never makes a detector more sensitive than its configured
    sigma.
    """
    total = histogram.total / histogram.increment
    if total <= 0:
        return 1.0
    share = min(_SHAPE_NEAREST_SHARE, max(decision_share, _SHAPE_EXCEEDANCES / total))
    reach = histogram.side_quantile(positive=positive, share=share)
    if reach <= 0:
        return 1.0
    gaussian = -_STANDARD_NORMAL.inv_cdf(share)
    measured = gaussian / reach
    if decision_share < share:
        wider = share * _SHAPE_SPAN
        inner = histogram.side_quantile(positive=positive, share=wider)
        if 0 < inner < reach:
            steepness = math.log(reach / inner) / math.log(
                gaussian / -_STANDARD_NORMAL.inv_cdf(wider))
            steepness = min(max(steepness, 1.0), _MAX_STEEPNESS)
            farthest = -_STANDARD_NORMAL.inv_cdf(decision_share)
            measured *= (gaussian / farthest) ** (steepness - 1.0)
    measured = min(1.0, measured)
    return 1.0 - (1.0 - measured) * total / (total + _SHAPE_PRIOR_POINTS)


@dataclass(slots=True)
class Incident:
    """Run-length state behind `is_onset`: an incident opens at the first anomalous point and
    closes after `cooldown` consecutive normal points."""

    is_open: bool = False
    normal_run: int = 0

    def is_onset(self, is_anomalous: bool) -> bool:
        return is_anomalous and not self.is_open

    def observe(self, is_anomalous: bool, *, cooldown: int) -> None:
        if is_anomalous:
            self.is_open, self.normal_run = True, 0
        elif self.is_open:
            self.normal_run += 1
            if self.normal_run >= cooldown:
                self.is_open, self.normal_run = False, 0


def bucket_layout(window_s: float) -> tuple[int, float]:
    """(number of buckets, bucket width in seconds) for a trailing window kept as a ring.

    Hourly buckets where that gives 24 to 168 of them; shorter windows get 24 finer buckets,
    longer ones 168 coarser ones, so state stays bounded whatever the window.
    """
    count = min(max(round(window_s / 3600), 24), 168)
    return count, window_s / count


@dataclass(slots=True)
class TimeRing:
    """Which epoch-aligned time bucket each slot of a fixed ring holds (None: empty).

    Bucket b covers [b * width_s, (b + 1) * width_s); slot b % count holds it until a later
    bucket needs the slot. The trailing window at time t is the `count` buckets ending with
    t's own, so it spans between window - width and window.
    """

    width_s: float
    ids: list[int | None]

    @classmethod
    def empty(cls, window_s: float) -> TimeRing:
        count, width_s = bucket_layout(window_s)
        return cls(width_s, [None] * count)

    def bucket_of(self, at_s: float) -> int:
        return math.floor(at_s / self.width_s)

    def claim(self, at_s: float) -> tuple[int, bool] | None:
        """The slot for a point at `at_s` and whether it must be cleared first (it held an
        older bucket); None for a point older than what the slot holds (too late to count)."""
        bucket = self.bucket_of(at_s)
        slot = bucket % len(self.ids)
        held = self.ids[slot]
        if held is not None and held > bucket:
            return None
        self.ids[slot] = bucket
        return slot, held != bucket

    def window(self, at_s: float) -> list[int]:
        """Slots whose bucket lies in the trailing window ending with `at_s`'s bucket."""
        current = self.bucket_of(at_s)
        oldest = current - len(self.ids)
        return [slot for slot, held in enumerate(self.ids)
                if held is not None and oldest < held <= current]

    def coverage(self, at_s: float, slots: list[int], window_s: float) -> float:
        """Share of the window between the start of its oldest bucket with data and `at_s`."""
        if not slots:
            return 0.0
        oldest = min(held for slot in slots if (held := self.ids[slot]) is not None)
        return min((at_s - oldest * self.width_s) / window_s, 1.0)


def closeness(value: float, reference: float, factor: float) -> float:
    """How far `value` has gone from `reference` (> 0) towards `factor` x reference, on a log
    scale: 0 at or below the reference, 1 at the bound and beyond."""
    if value <= reference:
        return 0.0
    return min(math.log(value / reference) / math.log(factor), 1.0)
