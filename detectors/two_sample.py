"""Two-sample detector: is one group (e.g. one prompt_template_version) measurably different from
the rest on a quality metric over the trailing `window`?

In: `observe(group, value, at, n=...)` for each window value of each group (n = requests behind
it), and `compare(group, at)` once per evaluation step. Out: a `Score` for the group against
all other groups pooled (None while the rest has fewer than `min_samples` requests).

Test: Welch's unequal-variance t-test on streaming (points, weight, mean, M2) moments, kept per
group in a ring of 24 time buckets over `window`. Welch rather than Mann-Whitney because moments
merge exactly in bounded state, while ranks need the raw samples (or sketches with their own
error); with `min_samples` >= 30 per side the t approximation holds for bounded, skewed scores.
A group is anomalous when (1) both sides have `min_samples` requests, (2) the p-value, Bonferroni
adjusted for the number of groups being compared (one-vs-rest tests of 2 groups are one test),
is below `alpha`, and (3) the relative difference of means is at least `min_effect` in
`direction` ("both" suits A/B experiments; "down" means lower is worse, as for quality scores).
Evaluating at every step ("peeking") makes it likelier than `alpha` that equal groups cross
the threshold at some step; `min_effect` bounds this on large samples, and rules add `for:`.
Score: value = the group's mean, baseline = the rest's mean, spread = standard error of the
difference, anomaly = 1 - adjusted p. Every observation is learned: the groups' windows are the
evidence, and no group is a baseline to protect.

Groups are kept least-recently-observed first; past `max_groups` (or once a group has no data
in the window) the oldest group is dropped, with its data leaving "the rest" too.

Scalar contract (`score`/`learn`, one series, no groups): the last complete bucket (window / 24)
is compared with the 22 before it, Bonferroni-adjusted for the 24 buckets a window holds, so a
normal day costs about `alpha` false alarms. Only complete buckets are tested (one look each):
re-testing a growing partial bucket at every point would cross `alpha` far more often. The
scored value lands in the current bucket, so it does not move the verdict.

>>> from datetime import UTC, datetime, timedelta
>>> detector = build_two_sample({"window": "1d", "direction": "down"})
>>> start = datetime(2025, 1, 1, tzinfo=UTC)
>>> for minute in range(600):
...     at = start + timedelta(minutes=minute)
...     wobble = 0.03 * (minute % 5 - 2)
...     for version, quality in (("v1", 0.84), ("v2", 0.85), ("v3", 0.74)):
...         detector.observe(version, quality + wobble, at, n=3)
>>> detector.compare("v1", start + timedelta(hours=10)).is_anomalous
False
>>> score = detector.compare("v3", start + timedelta(hours=10))
>>> score.is_onset, score.detail
(True, "'v3' mean 0.74 vs rest 0.845 (-12%, n=1800 vs 3600, Welch t=-49.3, p<0.001, 3 groups)")
"""

from __future__ import annotations

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
    epoch_s,
    format_p,
    format_span,
    is_beyond,
    is_new_incident,
    is_usable,
    latest_anomalous,
    merge_all,
    p_value,
    parse_direction,
    relative_change,
    welch,
)

BUCKETS = 24


class TwoSampleConfig(NamedTuple):
    window_s: float
    min_samples: int
    alpha: float
    min_effect: float
    direction: Direction
    max_groups: int
    cooldown_s: float


@dataclass(frozen=True, slots=True)
class TwoSampleState:
    version: int
    config: TwoSampleConfig
    groups: tuple[tuple[str, RingState], ...]
    """Least recently observed first."""
    last_anomalous_at_s: tuple[tuple[str, float], ...]
    series: RingState
    """The scalar contract's single series."""
    series_last_anomalous_at_s: float | None


class TwoSample:
    """One group vs the rest (Welch's t); for one series, its last complete bucket vs the
    buckets before it."""

    kind: ClassVar[str] = "two_sample"
    VERSION: ClassVar[int] = 1

    def __init__(self, config: TwoSampleConfig, state: TwoSampleState | None = None) -> None:
        self.config = config
        self._width_s = config.window_s / BUCKETS
        self._groups = {name: self._ring(ring) for name, ring in state.groups} if state else {}
        self._last_anomalous_at_s = dict(state.last_anomalous_at_s) if state else {}
        self._series = self._ring(state.series if state else None)
        self._series_last_anomalous_at_s = state.series_last_anomalous_at_s if state else None

    def _ring(self, state: RingState | None = None) -> BucketRing:
        return BucketRing(self._width_s, BUCKETS, state)

    def observe(self, group: str, value: float, at: datetime, *, n: int = 1) -> None:
        """Learn one value of `group` (the mean of `n` requests)."""
        if not is_usable(value, n):
            return
        at_s = epoch_s(at)
        ring = self._groups.pop(group, None) or self._ring()
        ring.add(value, at_s, n)
        self._groups[group] = ring
        newest = ring.bucket_id(at_s)
        while self._groups:
            oldest = next(iter(self._groups))
            latest = self._groups[oldest].latest
            if (len(self._groups) <= self.config.max_groups
                    and latest is not None and latest > newest - BUCKETS):
                break
            del self._groups[oldest]
            self._last_anomalous_at_s.pop(oldest, None)

    def compare(self, group: str, at: datetime) -> Score | None:
        """`group` vs all other groups over the window ending at `at`. This is the evaluation
        step: it remembers an open incident, so `is_onset` is true once per incident (call it
        once per step and group)."""
        at_s = epoch_s(at)
        current = self._series.bucket_id(at_s)  # every ring has the same bucket width
        windows = {name: ring.window(current - BUCKETS + 1, current)
                   for name, ring in self._groups.items()}
        sample = windows.get(group)
        if sample is None:
            return None
        rest = merge_all(m for name, m in windows.items() if name != group)
        eligible = sum(self._is_enough(m) for m in windows.values())
        verdict = self._verdict(sample, rest, comparisons=eligible if eligible > 2 else 1,
                                at_s=at_s, last_anomalous_s=self._last_anomalous_at_s.get(group),
                                names=(repr(group), "rest"))
        if verdict is not None and verdict.is_anomalous:
            self._last_anomalous_at_s[group] = max(
                self._last_anomalous_at_s.get(group, at_s), at_s)
        return verdict

    def _is_enough(self, side: Moments) -> bool:
        return side.points >= 2 and side.weight >= self.config.min_samples

    def _verdict(self, sample: Moments, reference: Moments, *, comparisons: int, at_s: float,
                 last_anomalous_s: float | None, names: tuple[str, str]) -> Score | None:
        config = self.config
        name, reference_name = names
        if sample.points == 0 or not self._is_enough(reference):
            return None
        test = welch(sample, reference)
        p = min(1.0, comparisons * p_value(test.t, test.df, config.direction))
        effect = relative_change(sample.mean, reference.mean)
        enough = self._is_enough(sample)
        anomalous = enough and is_beyond(effect, config.min_effect, config.direction) and (
            p < config.alpha)
        evidence = (f"Welch t={test.t:.3g}, {format_p(p)}" if enough else
                    f"sample below min_samples {config.min_samples}")
        groups = f", {comparisons} groups" if comparisons > 1 else ""
        return Score(
            value=sample.mean, baseline=reference.mean, spread=test.se, anomaly=1.0 - p,
            is_anomalous=anomalous,
            is_onset=is_new_incident(anomalous, at_s, last_anomalous_s, config.cooldown_s),
            detector=self.kind,
            detail=(f"{name} mean {sample.mean:.3g} vs {reference_name} {reference.mean:.3g} "
                    f"({effect:+.0%}, n={sample.weight:.0f} vs {reference.weight:.0f}, "
                    f"{evidence}{groups})"))

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        """Scalar form: the last complete bucket vs the buckets before it in the window."""
        at_s = epoch_s(at)
        last = self._series.bucket_id(at_s) - 1
        sample = self._series.window(last, last)
        reference = self._series.window(last - BUCKETS + 2, last - 1)
        names = (f"last complete {format_span(self._width_s)}",
                 f"{format_span(self.config.window_s - 2 * self._width_s)} before it")
        return self._verdict(sample, reference, comparisons=BUCKETS, at_s=at_s,
                             last_anomalous_s=self._series_last_anomalous_at_s, names=names)

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        if not is_usable(value, n):
            return
        at_s = epoch_s(at)
        score = self.score(value, at, n=n)
        self._series_last_anomalous_at_s = latest_anomalous(score, at_s,
                                                            self._series_last_anomalous_at_s)
        self._series.add(value, at_s, n)

    def snapshot(self) -> TwoSampleState:
        return TwoSampleState(
            self.VERSION, self.config,
            tuple((name, ring.state()) for name, ring in self._groups.items()),
            tuple(self._last_anomalous_at_s.items()), self._series.state(),
            self._series_last_anomalous_at_s)

    @classmethod
    def restore(cls, state: TwoSampleState) -> Self:
        check_version(cls.kind, state.version, cls.VERSION)
        return cls(state.config, state)


@register("two_sample", example={"window": "2h", "min_samples": 3})
def build_two_sample(raw: Mapping[str, Any]) -> TwoSample:
    params = Params(raw, "two_sample")
    config = TwoSampleConfig(
        window_s=params.duration("window", default="1d", low=timedelta(minutes=24),
                                 high=timedelta(days=90)).total_seconds(),
        min_samples=params.integer("min_samples", default=30, low=2),
        alpha=params.number("alpha", default=0.01, low=0.0, high=0.5, low_inclusive=False),
        min_effect=params.number("min_effect", default=0.05, low=0.0, high=10.0),
        direction=parse_direction(params, default="both"),
        max_groups=params.integer("max_groups", default=100, low=2, high=10_000),
        cooldown_s=params.duration("cooldown", default="1h").total_seconds())
    params.done()
    return TwoSample(config)
