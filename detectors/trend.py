"""Trend detector: is the series rising (or falling) steadily over the last 7 days?

In: one value per evaluation step (e.g. a window's p95 retrieval latency, cost per session) and
`n`, the requests behind it. Out: a `Score` comparing the fitted trend line at the last complete
day (value) with the line at the first day (baseline).

Method: the means of the last `window / bucket` complete buckets (7 UTC days by default) get a
Mann-Kendall test for a monotonic trend and a Theil-Sen slope for its size. Why these and not OLS
on hourly points: daily means cancel the diurnal cycle, whose autocorrelated residuals would make
an OLS t-test on hourly data claim significance far too often; Mann-Kendall is rank-based, so one
outlier day (an incident, a holiday) can neither fake nor hide a trend, and its null distribution
is computed exactly for untied data (normal approximation with tie correction otherwise). With
7 days and `alpha` 0.01 (one-sided) it needs at most 2 of the 21 day pairs out of order. Fires
when that test is significant AND the trend line changes by at least `min_change` (relative)
from the first to the last day. The current, partial bucket is not used, so the verdict changes
once per bucket; every point is learned (the window is the evidence, so nothing is held back).
Score: value / baseline = trend line at the last / first bucket, spread = 1.4826 x median
absolute residual of the bucket means, anomaly = 1 - p.

>>> from datetime import UTC, datetime, timedelta
>>> detector = build_trend({"window": "7d", "bucket": "1d"})
>>> start = datetime(2025, 1, 1, tzinfo=UTC)
>>> for hour in range(8 * 24):  # latency up 5% a day, with a diurnal cycle
...     day, hour_of_day = divmod(hour, 24)
...     value = 200 * 1.05 ** day * (1 + 0.2 * (hour_of_day in range(9, 18)))
...     detector.learn(value, start + timedelta(hours=hour), n=50)
>>> score = detector.score(250.0, start + timedelta(days=8))
>>> score.is_anomalous, score.detail
(True, 'trend line 223 -> 300 over 6d (+34%; Theil-Sen +12.8 per 1d; Mann-Kendall S=21, p<0.001)')
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple, Self

from detectors.base import DetectorConfigError, Score, check_version, register
from detectors.params import Params
from detectors.rings import (
    BucketRing,
    Direction,
    RingState,
    epoch_s,
    format_p,
    format_span,
    is_beyond,
    is_new_incident,
    is_usable,
    latest_anomalous,
    p_value,
    parse_direction,
    relative_change,
)

MAX_BUCKETS = 60
MIN_BUCKETS = 5  # 4 buckets can never reach p < 1/4! = 0.042


@functools.lru_cache(maxsize=MAX_BUCKETS + 1)
def _inversion_counts(n: int) -> tuple[int, ...]:
    """How many permutations of n items have k inversions, for k = 0 .. n(n-1)/2 (Mahonian
    numbers): the exact null distribution of Mann-Kendall's S = pairs - 2 * inversions."""
    counts = [1]
    for m in range(2, n + 1):  # item m adds 0 .. m-1 inversions
        prefix = [0]
        for count in counts:
            prefix.append(prefix[-1] + count)
        size = len(counts) + m - 1
        counts = [prefix[min(k + 1, len(counts))] - prefix[max(0, k - m + 1)]
                  for k in range(size)]
    return tuple(counts)


class MannKendall(NamedTuple):
    s: int
    p: float


def mann_kendall(values: Sequence[float], direction: Direction) -> MannKendall:
    """Mann-Kendall S and p-value for `values` in time order: exact without ties, otherwise
    the normal approximation with tie-corrected variance and continuity correction."""
    n = len(values)
    signs = [(b > a) - (b < a) for i, a in enumerate(values) for b in values[i + 1:]]
    s = sum(signs)
    if 0 not in signs:
        counts = _inversion_counts(n)
        total = math.factorial(n)
        inversions = signs.count(-1)
        p_up = sum(counts[:inversions + 1]) / total  # P(S >= s)
        p_down = sum(counts[inversions:]) / total  # P(S <= s)
        p = {"up": p_up, "down": p_down, "both": min(1.0, 2.0 * min(p_up, p_down))}[direction]
        return MannKendall(s, p)
    ties = [values.count(v) for v in set(values)]
    variance = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties)) / 18
    if variance <= 0:
        return MannKendall(s, 1.0)
    z = (s - math.copysign(1, s)) / math.sqrt(variance) if s else 0.0
    return MannKendall(s, p_value(z, math.inf, direction))


class TheilSen(NamedTuple):
    slope: float
    intercept: float


def theil_sen(times: Sequence[float], values: Sequence[float]) -> TheilSen:
    """Median of pairwise slopes; intercept = median(y) - slope * median(t) (as scipy's
    `theilslopes(method="separate")`)."""
    slopes = [(values[j] - values[i]) / (times[j] - times[i])
              for i in range(len(times)) for j in range(i + 1, len(times))
              if times[j] != times[i]]
    slope = statistics.median(slopes)
    return TheilSen(slope, statistics.median(values) - slope * statistics.median(times))


class TrendConfig(NamedTuple):
    bucket_s: float
    buckets: int
    alpha: float
    min_change: float
    direction: Direction
    min_samples: int
    min_buckets: int
    cooldown_s: float


@dataclass(frozen=True, slots=True)
class TrendState:
    version: int
    config: TrendConfig
    last_anomalous_at_s: float | None
    ring: RingState


class Trend:
    """Mann-Kendall trend test + Theil-Sen slope over the last complete buckets."""

    kind: ClassVar[str] = "trend"
    VERSION: ClassVar[int] = 1

    def __init__(self, config: TrendConfig, state: TrendState | None = None) -> None:
        self.config = config
        self._ring = BucketRing(config.bucket_s, config.buckets + 1,
                                state.ring if state else None)
        self._last_anomalous_at_s = state.last_anomalous_at_s if state else None

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        """Verdict on the complete buckets before `at`; `value` itself only lands in the
        current bucket, so it does not move the verdict."""
        config = self.config
        at_s = epoch_s(at)
        current = self._ring.bucket_id(at_s)
        usable = [(b, m) for b, m in self._ring.buckets(current - config.buckets, current - 1)
                  if m.weight >= config.min_samples]
        if len(usable) < config.min_buckets:
            return None
        first = usable[0][0]
        times = [float(b - first) for b, _ in usable]
        means = [m.mean for _, m in usable]
        test = mann_kendall(means, config.direction)
        line = theil_sen(times, means)
        start, end = line.intercept, line.intercept + line.slope * times[-1]
        change = relative_change(end, start)
        anomalous = is_beyond(change, config.min_change, config.direction) and (
            test.p < config.alpha)
        residuals = [abs(y - line.intercept - line.slope * t) for t, y in zip(times, means,
                                                                              strict=True)]
        per = format_span(config.bucket_s)
        return Score(
            value=end, baseline=start, spread=1.4826 * statistics.median(residuals),
            anomaly=1.0 - test.p, is_anomalous=anomalous,
            is_onset=is_new_incident(anomalous, at_s, self._last_anomalous_at_s,
                                     config.cooldown_s),
            detector=self.kind,
            detail=(f"trend line {start:.3g} -> {end:.3g} over "
                    f"{format_span(times[-1] * config.bucket_s)} ({change:+.0%}; Theil-Sen "
                    f"{line.slope:+.3g} per {per}; Mann-Kendall S={test.s}, {format_p(test.p)})"))

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        if not is_usable(value, n):
            return
        at_s = epoch_s(at)
        score = self.score(value, at, n=n)
        self._last_anomalous_at_s = latest_anomalous(score, at_s, self._last_anomalous_at_s)
        self._ring.add(value, at_s, n)

    def snapshot(self) -> TrendState:
        return TrendState(self.VERSION, self.config, self._last_anomalous_at_s,
                          self._ring.state())

    @classmethod
    def restore(cls, state: TrendState) -> Self:
        check_version(cls.kind, state.version, cls.VERSION)
        return cls(state.config, state)


@register("trend", example={"window": "1h", "bucket": "10m", "min_samples": 1})
def build_trend(raw: Mapping[str, Any]) -> Trend:
    params = Params(raw, "trend")
    window = params.duration("window", default="7d", low=timedelta(minutes=4))
    bucket = params.duration("bucket", default="1d", low=timedelta(seconds=1),
                             high=window / MIN_BUCKETS)
    buckets = round(window / bucket)
    if buckets > MAX_BUCKETS:
        raise DetectorConfigError(
            f"detector trend: bucket is {format_span(bucket.total_seconds())}, giving {buckets} "
            f"buckets in the window; expected at most {MAX_BUCKETS} (use a longer bucket)")
    config = TrendConfig(
        bucket_s=bucket.total_seconds(), buckets=buckets,
        alpha=params.number("alpha", default=0.01, low=0.0, high=0.5, low_inclusive=False),
        min_change=params.number("min_change", default=0.2, low=0.0),
        direction=parse_direction(params, default="up"),
        min_samples=params.integer("min_samples", default=10, low=1),
        min_buckets=params.integer("min_buckets", default=max(MIN_BUCKETS, buckets - 1),
                                   low=MIN_BUCKETS, high=buckets),
        cooldown_s=params.duration("cooldown", default=format_span(2 * bucket.total_seconds()))
        .total_seconds())
    params.done()
    smallest_p = (1.0 if config.direction != "both" else 2.0) / math.factorial(config.min_buckets)
    if smallest_p >= config.alpha:
        raise DetectorConfigError(
            f"detector trend: alpha is {config.alpha}, but with min_buckets "
            f"{config.min_buckets} the smallest possible p-value is {smallest_p:.4g}, so it "
            f"could never fire; expected alpha > {smallest_p:.4g} or more buckets")
    return Trend(config)
