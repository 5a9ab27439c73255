"""Bounded time-bucket state shared by the statistical detectors (drift, trend, novelty,
two_sample): mergeable weighted moments, a ring of fixed-width time buckets, Welch's t on
moments, tail p-values, and the incident rule behind `Score.is_onset`.

In: values with their event time and sample size `n`. Out: moments over ranges of buckets. No raw
samples are kept, so state is bounded by configuration, never by traffic.

>>> ring = BucketRing(width_s=60.0, slots=3)
>>> for minute, value in enumerate([1.0, 2.0, 3.0, 4.0]):
...     ring.add(value, minute * 60.0)
>>> ring.window(0, 10)  # minute 0 has left the 3-bucket ring
Moments(points=3, weight=3.0, mean=3.0, m2=2.0)
>>> round(ring.window(0, 10).variance, 6)
1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from scipy import special  # type: ignore[import-untyped]

from detectors.base import Score
from detectors.params import Params

Direction = Literal["down", "up", "both"]
_DIRECTIONS: dict[str, Direction] = {"down": "down", "up": "up", "both": "both"}


def parse_direction(params: Params, *, default: Direction) -> Direction:
    """The `direction` parameter: "down" (a fall is anomalous), "up" or "both"."""
    return _DIRECTIONS[params.choice("direction", default=default, allowed=tuple(_DIRECTIONS))]


class Moments(NamedTuple):
    """Weighted moments of a set of points, mergeable in any grouping.

    `points` values were added, each the mean of `n` requests; `weight` is the sum of n, `mean`
    the weighted mean and `m2` the sum of n * (x - mean)^2. Merging uses Chan et al.'s pairwise
    update rather than sums of squares, which cancel catastrophically for e.g. 1e9 + small noise.
    """

    points: int = 0
    weight: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, value: float, n: float = 1.0) -> Moments:
        """One point: `value` is the mean of `n` requests."""
        return cls(1, float(n), float(value), 0.0)

    def merged(self, other: Moments) -> Moments:
        if other.points == 0:
            return self
        if self.points == 0:
            return other
        weight = self.weight + other.weight
        delta = other.mean - self.mean
        share = other.weight / weight
        return Moments(self.points + other.points, weight, self.mean + delta * share,
                       self.m2 + other.m2 + delta * delta * self.weight * share)

    @property
    def variance(self) -> float:
        """Per-request variance, m2 / (points - 1); 0.0 with fewer than two points.

        When each point is the mean of n requests, E[n (x - mean)^2] is the per-request variance
        plus n times any between-window variance, so `variance / weight` is the squared standard
        error of `mean` either way (one-way ANOVA between-group mean square).
        """
        return self.m2 / (self.points - 1) if self.points > 1 else 0.0


EMPTY = Moments()


def merge_all(parts: Iterable[Moments]) -> Moments:
    total = EMPTY
    for part in parts:
        total = total.merged(part)
    return total


def is_usable(value: float, n: float) -> bool:
    """Non-finite values and empty windows (n <= 0) carry no information and are skipped."""
    return math.isfinite(value) and n > 0


class RingState(NamedTuple):
    """Plain-data form of a `BucketRing` (width and size live in the detector's config)."""

    latest: int | None
    buckets: tuple[tuple[int, Moments], ...]


class BucketRing:
    """Moments per fixed-width time bucket (id = floor(t / width_s)); only the newest `slots`
    bucket ids are kept. A point older than the ring is dropped (too late to matter)."""

    __slots__ = ("_buckets", "_latest", "slots", "width_s")

    def __init__(self, width_s: float, slots: int, state: RingState | None = None) -> None:
        self.width_s = width_s
        self.slots = slots
        self._latest = state.latest if state else None
        # Insertion order is kept through snapshots, so merges add up in the same order and a
        # restored ring returns bit-identical floats.
        self._buckets: dict[int, Moments] = dict(state.buckets) if state else {}

    def bucket_id(self, at_s: float) -> int:
        return math.floor(at_s / self.width_s)

    def add(self, value: float, at_s: float, n: float = 1.0) -> None:
        bucket = self.bucket_id(at_s)
        latest = self._latest
        if latest is not None and bucket <= latest - self.slots:
            return
        self._buckets[bucket] = self._buckets.get(bucket, EMPTY).merged(Moments.of(value, n))
        if latest is None or bucket > latest:
            self._latest = bucket
            for old in [b for b in self._buckets if b <= bucket - self.slots]:
                del self._buckets[old]

    def window(self, first: int, last: int) -> Moments:
        """Merged moments of buckets with first <= id <= last."""
        return merge_all(m for b, m in self._buckets.items() if first <= b <= last)

    def buckets(self, first: int, last: int) -> list[tuple[int, Moments]]:
        """Non-empty buckets with first <= id <= last, oldest first."""
        return sorted((b, m) for b, m in self._buckets.items() if first <= b <= last)

    @property
    def latest(self) -> int | None:
        return self._latest

    def state(self) -> RingState:
        return RingState(self._latest, tuple(self._buckets.items()))


class Welch(NamedTuple):
    """Welch's t on moments: `diff` = mean_a - scale * mean_b, its standard error and df."""

    diff: float
    se: float
    df: float

    @property
    def t(self) -> float:
        if self.se > 0:
            return self.diff / self.se
        return 0.0 if self.diff == 0 else math.copysign(math.inf, self.diff)


def welch(a: Moments, b: Moments, *, scale_b: float = 1.0) -> Welch:
    """Welch's unequal-variance t for a.mean - scale_b * b.mean.

    Each side's squared standard error is variance / weight with points - 1 degrees of freedom
    (Welch-Satterthwaite combines them). A side with fewer than two points has no variance of
    its own and borrows the other side's per-request variance and df. Needs two points on at
    least one side.
    """
    var_a, df_a = (a.variance, a.points - 1) if a.points > 1 else (b.variance, b.points - 1)
    var_b, df_b = (b.variance, b.points - 1) if b.points > 1 else (a.variance, a.points - 1)
    err_a = var_a / a.weight
    err_b = scale_b * scale_b * var_b / b.weight
    se2 = err_a + err_b
    # Welch-Satterthwaite (err_a + err_b)^2 / (err_a^2/df_a + err_b^2/df_b), written with each
    # side's share of se2 so that squaring tiny or huge errors cannot underflow or overflow.
    share = err_a / se2 if se2 > 0 else 0.5
    df = 1.0 / (share * share / df_a + (1.0 - share) ** 2 / df_b)
    return Welch(a.mean - scale_b * b.mean, math.sqrt(se2), df)


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def p_value(stat: float, df: float, direction: Direction) -> float:
    """Tail probability of a t (df = inf: normal) statistic: "down" is P(T <= stat), evidence
    for a fall; "up" is P(T >= stat); "both" is the two-sided p."""
    def cdf(x: float) -> float:
        return normal_cdf(x) if math.isinf(df) else float(special.stdtr(df, x))

    if direction == "down":
        return cdf(stat)
    if direction == "up":
        return cdf(-stat)
    return min(1.0, 2.0 * cdf(-abs(stat)))


def relative_change(value: float, reference: float) -> float:
    """(value - reference) / |reference|; +-inf when the reference is 0 and value differs."""
    if reference != 0:
        return (value - reference) / abs(reference)
    return 0.0 if value == reference else math.copysign(math.inf, value - reference)


def is_beyond(change: float, min_change: float, direction: Direction) -> bool:
    """Whether a relative change reaches `min_change` in `direction` ("both": either way)."""
    if direction == "up":
        return change >= min_change
    if direction == "down":
        return change <= -min_change
    return abs(change) >= min_change


def latest_anomalous(score: Score | None, at_s: float, last_s: float | None) -> float | None:
    """The time of the latest anomalous point: `last_s`, moved on to `at_s` if `score` is
    anomalous (points may arrive out of order, so it never moves back)."""
    if score is not None and score.is_anomalous:
        return max(last_s or at_s, at_s)
    return last_s


def earliest(first_s: float | None, at_s: float) -> float:
    """The time of the first point seen: `first_s`, or `at_s` if that is earlier (or first)."""
    return at_s if first_s is None or at_s < first_s else first_s


def is_new_incident(is_anomalous: bool, at_s: float, last_anomalous_s: float | None,
                    cooldown_s: float) -> bool:
    """True for the first anomalous point of an incident: an incident ends once its condition
    has been false for longer than `cooldown_s`."""
    return is_anomalous and (last_anomalous_s is None or at_s - last_anomalous_s > cooldown_s)


def epoch_s(at: datetime) -> float:
    """Event time as POSIX seconds; a naive datetime is read as UTC."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def format_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def format_span(seconds: float) -> str:
    """Compact duration for details: 604800 -> "7d", 5400 -> "1h30m"."""
    parts, rest = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
