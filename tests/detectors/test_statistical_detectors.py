"""Statistical detectors (drift, trend, novelty, two_sample): the streaming statistics behind
them match a numpy/scipy reference on generated data, and each detector fires on its incident
and stays quiet on normal traffic.

Tolerances: means within 1e-12 of the data's magnitude (+ 1e-300); variances within 1e-9
relative plus 64 float64 epsilons x total weight x magnitude x (deviation + eps x magnitude),
the rounding of merging moments of data far from zero (numpy's own weighted mean is off by
eps x magnitude, so constant data gives it a small positive variance where merged moments give
exactly 0), plus 1e-300 because subnormal values carry no relative precision; Mann-Kendall
p-values within 1e-9 relative; Welch t, df and p-values within 1e-6 relative, t and p also
within 1e-6 absolute (equal means give t ~ 0, where the rounding of two large means is all
there is).
"""

from __future__ import annotations

import itertools
import math
import pickle
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped]

from detectors import Detector, DetectorConfigError, Score, build
from detectors.novelty import Novelty
from detectors.rings import BucketRing, Moments, merge_all, p_value, welch
from detectors.trend import mann_kendall, theil_sen
from detectors.two_sample import TwoSample

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
EPS = float(np.finfo(float).eps)
DAY_MINUTES = 24 * 60


# --- generated data: constants, zeros, tiny, unit, huge, and offset (cancellation) ---------

@st.composite
def samples(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> list[float]:
    size = draw(st.integers(min_size, max_size))
    kind = draw(st.sampled_from(["constant", "zeros", "tiny", "unit", "huge", "offset"]))
    if kind == "constant":
        return [draw(st.floats(-1e6, 1e6))] * size
    if kind == "zeros":
        return [0.0] * size
    unit = draw(st.lists(st.floats(-1.0, 1.0), min_size=size, max_size=size))
    scale, offset = {"tiny": (1e-9, 0.0), "unit": (1.0, 0.0), "huge": (1e9, 0.0),
                     "offset": (1.0, 1e6)}[kind]
    return [offset + scale * u for u in unit]


def weighted_reference(values: Sequence[float], weights: Sequence[float]) -> tuple[float, float]:
    """numpy: weighted mean and sum(w (x - mean)^2) / (points - 1)."""
    x, w = np.asarray(values), np.asarray(weights, dtype=float)
    mean = float(np.average(x, weights=w))
    var = float(np.sum(w * (x - mean) ** 2) / (len(x) - 1)) if len(x) > 1 else 0.0
    return mean, var


def assert_moments_close(got: Moments, values: Sequence[float], weights: Sequence[float]) -> None:
    mean, var = weighted_reference(values, weights)
    peak = max(abs(v) for v in values)
    deviation = max(abs(v - mean) for v in values) + EPS * peak
    assert got.points == len(values)
    assert got.weight == pytest.approx(sum(weights), rel=1e-12)
    assert got.mean == pytest.approx(mean, rel=1e-12, abs=1e-12 * peak + 1e-300)
    tolerance = 1e-9 * var + 64 * EPS * sum(weights) * peak * deviation + 1e-300
    assert abs(got.variance - var) <= tolerance


@given(data=st.data(), values=samples())
def test_merged_moments_match_numpy_in_any_grouping(data: st.DataObject,
                                                    values: list[float]) -> None:
    weights = data.draw(st.lists(st.integers(1, 1000), min_size=len(values),
                                 max_size=len(values)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    bounds = [0, *cuts, len(values)]
    parts = [merge_all(Moments.of(v, w) for v, w in zip(values[a:b], weights[a:b], strict=True))
             for a, b in itertools.pairwise(bounds)]
    assert_moments_close(merge_all(parts), values, weights)


@given(data=st.data(), values=samples(min_size=2, max_size=60))
def test_ring_window_matches_numpy_over_its_buckets(data: st.DataObject,
                                                    values: list[float]) -> None:
    times = sorted(data.draw(st.lists(st.floats(0.0, 86_400.0), min_size=len(values),
                                      max_size=len(values))))
    width, slots = data.draw(st.sampled_from([(60.0, 10), (600.0, 24), (3600.0, 168)]))
    ring = BucketRing(width, slots)
    for value, at_s in zip(values, times, strict=True):
        ring.add(value, at_s)
    latest = math.floor(times[-1] / width)
    first = data.draw(st.integers(latest - slots - 2, latest))
    last = data.draw(st.integers(first, latest + 2))
    kept = [v for v, t in zip(values, times, strict=True)
            if max(first, latest - slots + 1) <= math.floor(t / width) <= last]
    got = ring.window(first, last)
    if kept:
        assert_moments_close(got, kept, [1.0] * len(kept))
    else:
        assert got == Moments()


def is_degenerate(*sides: Sequence[float]) -> bool:
    """A side whose spread is zero or below float64's resolution at its magnitude (t is 0/0 or
    pure rounding, for scipy and for us alike; constant sides have example tests), or so small
    that squared variances underflow, which breaks scipy's Welch df (ours is scale-free)."""
    return any(float(np.std(x)) <= max(1e-9 * max(abs(v) for v in x), 1e-70) for x in sides)


@given(a=samples(min_size=2), b=samples(min_size=2))
def test_welch_matches_scipy_ttest(a: list[float], b: list[float]) -> None:
    test = welch(merge_all(map(Moments.of, a)), merge_all(map(Moments.of, b)))
    if is_degenerate(a, b):
        return
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert test.t == pytest.approx(reference.statistic, rel=1e-6, abs=1e-6)
    assert test.df == pytest.approx(reference.df, rel=1e-6)
    assert p_value(test.t, test.df, "both") == pytest.approx(reference.pvalue, rel=1e-6,
                                                              abs=1e-6)


def test_welch_on_equal_constants_is_no_evidence() -> None:
    test = welch(merge_all(map(Moments.of, [3.0] * 5)), merge_all(map(Moments.of, [3.0] * 7)))
    assert (test.t, p_value(test.t, test.df, "both")) == (0.0, 1.0)


@given(values=st.lists(st.floats(-1e9, 1e9), min_size=5, max_size=12, unique=True))
def test_mann_kendall_matches_scipy_kendalltau_exact(values: list[float]) -> None:
    times = list(range(len(values)))
    reference = stats.kendalltau(times, values, method="exact")
    pairs = len(values) * (len(values) - 1) // 2
    assert mann_kendall(values, "both").s == round(reference.statistic * pairs)
    assert mann_kendall(values, "both").p == pytest.approx(reference.pvalue, rel=1e-9)
    up, down = mann_kendall(values, "up").p, mann_kendall(values, "down").p
    assert min(1.0, 2 * min(up, down)) == pytest.approx(reference.pvalue, rel=1e-9)


@given(values=samples(min_size=5, max_size=30))
def test_mann_kendall_with_ties_matches_numpy_s(values: list[float]) -> None:
    x = np.asarray(values)
    s = int(sum(np.sign(x[i + 1:] - x[i]).sum() for i in range(len(x))))
    result = mann_kendall(values, "up")
    assert result.s == s
    assert 0.0 <= result.p <= 1.0


@given(values=samples(min_size=3, max_size=30))
def test_theil_sen_matches_scipy_theilslopes(values: list[float]) -> None:
    times = [float(t) for t in range(len(values))]
    reference = stats.theilslopes(values, times, method="separate")
    peak = max(abs(v) for v in values)
    line = theil_sen(times, values)
    assert line.slope == pytest.approx(reference.slope, rel=1e-9, abs=1e-12 * peak)
    assert line.intercept == pytest.approx(reference.intercept, rel=1e-9, abs=1e-9 * peak)


@settings(max_examples=40)
@given(baseline=samples(min_size=20, max_size=60), recent=samples(min_size=2, max_size=20))
def test_drift_p_value_matches_scipy_welch_against_the_drop_band(
        baseline: list[float], recent: list[float]) -> None:
    """The drift score is 1 - p of a one-sided Welch test of recent vs 0.9 x baseline."""
    detector = build({"kind": "drift", "baseline": "1d", "recent": "1h", "warmup": "1h",
                      "min_samples": 2, "learn_anomalies": True})
    for i, value in enumerate(baseline):  # hours 0 .. 20 of day 0
        detector.learn(value, START + timedelta(minutes=i * 20))
    for i, value in enumerate(recent[:-1]):  # the last 40 minutes before day 1
        detector.learn(value, START + timedelta(hours=23, minutes=20 + 2 * i))
    score = detector.score(recent[-1], START + timedelta(days=1))
    assert score is not None
    mean_b, var_b = weighted_reference(baseline, [1.0] * len(baseline))
    mean_r, var_r = weighted_reference(recent, [1.0] * len(recent))
    c = 0.9 if mean_b >= 0 else 1.1
    err_r, err_b = var_r / len(recent), c * c * var_b / len(baseline)
    if is_degenerate(baseline, recent):
        return
    t = (mean_r - c * mean_b) / math.sqrt(err_r + err_b)
    df = (err_r + err_b) ** 2 / (err_r**2 / (len(recent) - 1) + err_b**2 / (len(baseline) - 1))
    assert score.anomaly == pytest.approx(1.0 - stats.t.cdf(t, df), rel=1e-6, abs=1e-6)


@settings(max_examples=40)
@given(a=samples(min_size=2, max_size=40), b=samples(min_size=2, max_size=40))
def test_two_sample_p_value_matches_scipy_welch(a: list[float], b: list[float]) -> None:
    detector = build({"kind": "two_sample", "min_samples": 2})
    assert isinstance(detector, TwoSample)
    for group, values in (("a", a), ("b", b)):
        for i, value in enumerate(values):
            detector.observe(group, value, START + timedelta(minutes=i))
    score = detector.compare("a", START + timedelta(hours=1))
    assert score is not None
    if is_degenerate(a, b):
        return
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert score.anomaly == pytest.approx(1.0 - reference.pvalue, rel=1e-6, abs=1e-6)


# --- streams ---------------------------------------------------------------------------

Points = list[tuple[float, int]]
"""(value, n) per step."""


def run(detector: Detector[Any], points: Sequence[tuple[float, int]], start: datetime,
        step: timedelta) -> list[Score | None]:
    """Score then learn each (value, n), one every `step` from `start`."""
    scores = []
    for i, (value, n) in enumerate(points):
        at = start + i * step
        scores.append(detector.score(value, at, n=n))
        detector.learn(value, at, n=n)
    return scores


def quality_week(rng: np.random.Generator, days: int, level: float = 0.84) -> Points:
    """5-minute windows of judge scores (per-request sd 0.1), diurnal volume and a +-3% cycle."""
    points = []
    for i in range(days * 288):
        phase = 2 * math.pi * (i % 288) / 288
        n = max(1, int(rng.poisson(20 * (1 + 0.5 * math.sin(phase)))))
        points.append((level * (1 + 0.03 * math.sin(phase)) + rng.normal(0, 0.1 / math.sqrt(n)),
                       n))
    return points


def anomalous(scores: Sequence[Score | None]) -> list[int]:
    return [i for i, s in enumerate(scores) if s is not None and s.is_anomalous]


def onsets(scores: Sequence[Score | None]) -> list[int]:
    return [i for i, s in enumerate(scores) if s is not None and s.is_onset]


FIVE_MINUTES = timedelta(minutes=5)


# --- drift -------------------------------------------------------------------------------

def test_drift_fires_once_within_the_hour_on_a_sustained_15pct_drop() -> None:
    rng = np.random.default_rng(7)
    detector = build({"kind": "drift"})
    week = quality_week(rng, days=7)
    run(detector, week, START, FIVE_MINUTES)
    drop = [(0.84 * 0.85 + rng.normal(0, 0.1 / math.sqrt(20)), 20) for _ in range(36)]
    scores = run(detector, drop, START + len(week) * FIVE_MINUTES, FIVE_MINUTES)
    assert len(onsets(scores)) == 1
    assert onsets(scores)[0] < 12  # within the hour
    assert all(s is not None and s.is_anomalous for s in scores[12:])


def test_drift_stays_quiet_on_two_weeks_of_noisy_normal_data() -> None:
    detector = build({"kind": "drift"})
    scores = run(detector, quality_week(np.random.default_rng(3), days=14), START, FIVE_MINUTES)
    assert any(s is not None for s in scores)
    assert anomalous(scores) == []


def test_drift_stays_quiet_on_the_same_drop_from_a_handful_of_scores() -> None:
    detector = build({"kind": "drift"})
    run(detector, quality_week(np.random.default_rng(7), days=7), START, FIVE_MINUTES)
    # The next 2 hours bring only 6 judge scores, all about 15% lower.
    handful = [(0.714 + d, 1) for d in (0.05, -0.08, 0.1, -0.02, 0.0, -0.04)]
    scores = run(detector, handful, START + timedelta(days=7, minutes=10), timedelta(minutes=20))
    assert anomalous(scores) == []


def test_drift_confidence_bound_alone_keeps_a_handful_quiet() -> None:
    """Even with min_samples lowered to 2, five noisy scores cannot prove a 15% drop."""
    detector = build({"kind": "drift", "min_samples": 2})
    run(detector, quality_week(np.random.default_rng(7), days=7), START, FIVE_MINUTES)
    handful = [(0.714 + d, 1) for d in (0.15, -0.1, 0.05, -0.12, 0.02)]
    scores = run(detector, handful, START + timedelta(days=7, minutes=10), timedelta(minutes=2))
    assert anomalous(scores) == []


def test_drift_stays_quiet_on_a_9pct_drop_with_a_large_sample() -> None:
    rng = np.random.default_rng(11)
    detector = build({"kind": "drift"})
    week = quality_week(rng, days=7)
    run(detector, week, START, FIVE_MINUTES)
    drop = [(0.84 * 0.91 + rng.normal(0, 0.1 / math.sqrt(200)), 200) for _ in range(36)]
    scores = run(detector, drop, START + len(week) * FIVE_MINUTES, FIVE_MINUTES)
    assert anomalous(scores) == []


def test_drift_keeps_anomalous_points_out_of_the_baseline() -> None:
    rng = np.random.default_rng(7)
    detector = build({"kind": "drift"})
    week = quality_week(rng, days=7)
    run(detector, week, START, FIVE_MINUTES)
    drop = [(0.714, 20)] * (12 * 24)  # a whole day at the lower level
    scores = run(detector, drop, START + len(week) * FIVE_MINUTES, FIVE_MINUTES)
    last = scores[-1]
    assert last is not None and last.is_anomalous
    assert last.baseline == pytest.approx(0.84, abs=0.02)


def test_drift_pages_on_a_25pct_eval_drop_within_15_minutes() -> None:
    """Tier 1: one-minute windows, recent = 15m, drop = 0.25."""
    rng = np.random.default_rng(5)
    detector = build({"kind": "drift", "recent": "15m", "drop": 0.25})
    normal = [(0.8 + rng.normal(0, 0.1 / math.sqrt(4)), 4) for _ in range(2 * DAY_MINUTES)]
    run(detector, normal, START, timedelta(minutes=1))
    drop = [(0.8 * 0.7 + rng.normal(0, 0.05), 4) for _ in range(20)]
    scores = run(detector, drop, START + timedelta(days=2), timedelta(minutes=1))
    assert len(onsets(scores)) == 1
    assert onsets(scores)[0] < 15


# --- trend -------------------------------------------------------------------------------

def latency_hours(rng: np.random.Generator, days: int, growth_per_day: float) -> Points:
    """Hourly p95 retrieval latency (ms) with a strong diurnal cycle and 10% noise."""
    points = []
    for hour in range(days * 24):
        diurnal = 1 + 0.3 * math.sin(2 * math.pi * (hour % 24) / 24)
        level = 300 * (1 + growth_per_day) ** (hour / 24)
        points.append((level * diurnal * (1 + rng.normal(0, 0.1)), int(rng.poisson(400))))
    return points


def test_trend_fires_once_on_a_steady_seven_day_increase() -> None:
    detector = build({"kind": "trend"})
    scores = run(detector, latency_hours(np.random.default_rng(2), days=10, growth_per_day=0.05),
                 START, timedelta(hours=1))
    assert len(onsets(scores)) == 1
    assert 6 * 24 <= onsets(scores)[0] < 9 * 24  # ready with 6 of 7 days (min_buckets)
    assert "Mann-Kendall" in (scores[-1].detail if scores[-1] else "")


def test_trend_stays_quiet_on_flat_noisy_diurnal_data() -> None:
    detector = build({"kind": "trend"})
    scores = run(detector, latency_hours(np.random.default_rng(4), days=28, growth_per_day=0.0),
                 START, timedelta(hours=1))
    assert any(s is not None for s in scores)
    assert anomalous(scores) == []


def test_trend_stays_quiet_on_a_significant_but_small_increase() -> None:
    """1% a day is a real trend (Mann-Kendall significant) but below min_change 0.2."""
    detector = build({"kind": "trend"})
    points = [(300 * 1.01 ** (h / 24), 400) for h in range(10 * 24)]
    scores = run(detector, points, START, timedelta(hours=1))
    last = scores[-1]
    assert last is not None and last.anomaly > 0.99
    assert anomalous(scores) == []


def test_trend_refuses_an_alpha_it_could_never_reach() -> None:
    with pytest.raises(DetectorConfigError, match=r"alpha is 0\.0001.*min_buckets 6"):
        build({"kind": "trend", "alpha": 0.0001})


# --- novelty -----------------------------------------------------------------------------

def warmed_novelty(**params: object) -> Novelty:
    detector = build({"kind": "novelty", "min_count": 50, "window": "1h", **params})
    assert isinstance(detector, Novelty)
    for hour in range(25):
        for segment, count in (("free", 300), ("pro", 40), ("edu", 3)):
            detector.observe(segment, count, START + timedelta(hours=hour))
    return detector


def observe_every_10m(detector: Novelty, label: str, counts: Sequence[int],
                      start: datetime) -> list[Score | None]:
    return [detector.observe(label, c, start + i * timedelta(minutes=10))
            for i, c in enumerate(counts)]


def test_novelty_fires_once_for_a_new_value_that_reaches_the_volume() -> None:
    detector = warmed_novelty()
    scores = observe_every_10m(detector, "enterprise", [20, 20, 20, 20, 20, 20],
                               START + timedelta(hours=25))
    assert onsets(scores) == [2]  # 60 requests after 20 minutes
    assert anomalous(scores) == [2, 3, 4, 5]


def test_novelty_stays_quiet_for_known_values_even_at_high_volume() -> None:
    detector = warmed_novelty()
    scores = [detector.observe(segment, 5000, START + timedelta(hours=26))
              for segment in ("free", "pro", "edu")]
    assert all(s is not None for s in scores)
    assert anomalous(scores) == []


def test_novelty_stays_quiet_for_a_new_value_below_the_volume() -> None:
    detector = warmed_novelty()
    trickle = observe_every_10m(detector, "trial", [5] * 30, START + timedelta(hours=25))
    assert anomalous(trickle) == []  # 30 in its first hour, then a known value


def test_novelty_stays_quiet_while_warming_up() -> None:
    detector = build({"kind": "novelty"})
    assert isinstance(detector, Novelty)
    assert detector.observe("free", 10_000, START) is None


def test_novelty_forgets_least_recently_seen_values_past_max_values() -> None:
    detector = warmed_novelty(max_values=10)
    at = START + timedelta(hours=26)
    for i in range(1000):
        detector.observe(f"campaign-{i}", 1, at + timedelta(seconds=i))
    snapshot = detector.snapshot()
    assert len(snapshot.values) == 10
    # "free" was forgotten; when it comes back with volume it is new again (documented).
    score = detector.observe("free", 300, at + timedelta(hours=1))
    assert score is not None and score.is_onset


def test_novelty_scalar_form_fires_on_unseen_volume() -> None:
    detector = build({"kind": "novelty", "min_count": 50, "warmup": "1h"})
    scores = run(detector, [(0.0, 1)] * 7 + [(80.0, 1), (90.0, 1)], START,
                 timedelta(minutes=10))
    assert scores[0] is None
    assert onsets(scores) == [7]
    assert anomalous(scores) == [7, 8]


# --- two_sample --------------------------------------------------------------------------

def observe_groups(detector: TwoSample, rng: np.random.Generator,
                   groups: dict[str, Callable[[np.random.Generator], float]],
                   count: int) -> datetime:
    """`count` scores per group, one per group per minute; returns the time after the last."""
    for i in range(count):
        for group, draw in groups.items():
            detector.observe(group, draw(rng), START + timedelta(minutes=i))
    return START + timedelta(minutes=count)


def quality(mean: float) -> Callable[[np.random.Generator], float]:
    return lambda rng: float(np.clip(rng.normal(mean, 0.12), 0.0, 1.0))


def test_two_sample_fires_once_when_one_template_is_clearly_worse() -> None:
    detector = build({"kind": "two_sample", "direction": "down"})
    assert isinstance(detector, TwoSample)
    end = observe_groups(detector, np.random.default_rng(1),
                         {"v1": quality(0.82), "v2": quality(0.83), "v3": quality(0.72)}, 200)
    scores = {g: detector.compare(g, end) for g in ("v1", "v2", "v3")}
    assert [g for g, s in scores.items() if s is not None and s.is_anomalous] == ["v3"]
    assert scores["v3"] is not None and scores["v3"].is_onset
    again = detector.compare("v3", end + timedelta(minutes=1))
    assert again is not None and again.is_anomalous and not again.is_onset


@pytest.mark.parametrize("groups", [2, 3, 5])
def test_two_sample_false_positive_rate_on_equal_groups_stays_near_alpha(groups: int) -> None:
    """min_effect 0 isolates the test: with Bonferroni the family-wise rate is <= alpha."""
    seeds, firing = 300, 0
    names = [f"v{g}" for g in range(groups)]
    for seed in range(seeds):
        detector = build({"kind": "two_sample", "min_effect": 0.0})
        assert isinstance(detector, TwoSample)
        end = observe_groups(detector, np.random.default_rng(seed),
                             dict.fromkeys(names, quality(0.8)), 60)
        firing += any((s := detector.compare(g, end)) is not None and s.is_anomalous
                      for g in names)
    # alpha = 0.01: expect <= 3 of 300; 9 would be 3x alpha (binomial tail < 0.5%).
    assert firing <= 9


def test_two_sample_stays_quiet_on_small_samples() -> None:
    detector = build({"kind": "two_sample"})
    assert isinstance(detector, TwoSample)
    end = observe_groups(detector, np.random.default_rng(1),
                         {"v1": quality(0.85), "v2": quality(0.85), "v3": quality(0.6)}, 20)
    score = detector.compare("v3", end)
    assert score is not None and not score.is_anomalous
    assert "below min_samples" in score.detail


def test_two_sample_stays_quiet_on_a_tiny_but_significant_difference() -> None:
    detector = build({"kind": "two_sample", "window": "7d"})
    assert isinstance(detector, TwoSample)
    end = observe_groups(detector, np.random.default_rng(1),
                         {"a": quality(0.80), "b": quality(0.79)}, 20_000)
    score = detector.compare("b", end)
    assert score is not None and score.anomaly > 0.99 and not score.is_anomalous


def test_two_sample_keeps_at_most_max_groups() -> None:
    detector = build({"kind": "two_sample", "max_groups": 5})
    assert isinstance(detector, TwoSample)
    for i in range(100):
        detector.observe(f"user-{i}", 0.8, START + timedelta(seconds=i))
    assert [name for name, _ in detector.snapshot().groups] == [f"user-{i}" for i in
                                                                range(95, 100)]


def test_two_sample_scalar_form_fires_when_the_last_complete_hour_is_worse() -> None:
    detector = build({"kind": "two_sample", "window": "1d", "direction": "down"})
    rng = np.random.default_rng(9)
    values = [(quality(0.8)(rng), 1) for _ in range(3 * DAY_MINUTES)]
    values += [(quality(0.7)(rng), 1) for _ in range(90)]
    scores = run(detector, values, START, timedelta(minutes=1))
    assert scores[0] is None
    assert onsets(scores) == [3 * DAY_MINUTES + 60]  # when the bad hour is complete


# --- state size with default parameters (the contract suite checks its example tables) -----

@pytest.mark.parametrize("kind", ["drift", "trend", "two_sample", "novelty"])
def test_default_state_stops_growing_once_the_window_is_full(kind: str) -> None:
    detector = build({"kind": kind})
    points = quality_week(np.random.default_rng(0), days=21)
    sizes = []
    for day in range(21):
        run(detector, points[day * 288:(day + 1) * 288], START + timedelta(days=day),
            FIVE_MINUTES)
        sizes.append(len(pickle.dumps(detector.snapshot())))
    assert max(sizes[9:]) <= min(sizes[9:]) * 1.05 + 64, sizes  # full after 8 days


def test_novelty_state_is_bounded_by_max_values() -> None:
    detector = warmed_novelty(max_values=100)
    for i in range(5000):
        detector.observe(f"campaign-{i}", 1, START + timedelta(hours=26, seconds=i))
    assert len(detector.snapshot().values) == 100
