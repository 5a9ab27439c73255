"""The detector contract, checked on every registered kind (built from its example table):
score is pure, not-ready is None, snapshots are plain versioned data that pickle and restore
exactly, state stays flat over a long stream, and unknown parameters are named."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pytest

import detectors
from detectors import Detector, DetectorConfigError, Score, build, example_params

KINDS = detectors.kinds()
START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
Point = tuple[float, datetime, int]
_PLAIN = (int, float, str, bytes, bool, type(None))


@cache
def stream(days: int, step_minutes: int) -> tuple[Point, ...]:
    """Positive diurnal traffic with lognormal noise, sample sizes and a few spikes."""
    rng = np.random.default_rng(20250303)
    minutes = np.arange(0, days * 1440, step_minutes)
    hours = (minutes / 60.0) % 24
    level = 100.0 + 60.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0)
    values = level * rng.lognormal(0.0, 0.1, minutes.size)
    values[rng.choice(minutes.size, size=max(3, minutes.size // 2000), replace=False)] *= 5.0
    sizes = rng.poisson(level / 10.0) + 1
    return tuple((float(v), START + timedelta(minutes=int(m)), int(n))
                 for v, m, n in zip(values, minutes, sizes, strict=True))


def run(detector: Detector[Any], points: tuple[Point, ...]) -> list[Score | None]:
    scores = []
    for value, at, n in points:
        scores.append(detector.score(value, at, n=n))
        detector.learn(value, at, n=n)
    return scores


def assert_plain(data: object, path: str) -> None:
    if isinstance(data, _PLAIN):
        return
    if isinstance(data, tuple):
        for index, item in enumerate(data):
            assert_plain(item, f"{path}[{index}]")
        return
    assert dataclasses.is_dataclass(data) and not isinstance(data, type), (
        f"{path} is a {type(data).__name__}; snapshots hold plain numbers, strings, bytes, "
        f"tuples and frozen dataclasses of those")
    assert type(data).__dataclass_params__.frozen, f"{path} is not a frozen dataclass"  # type: ignore[attr-defined]
    for field in dataclasses.fields(data):
        assert_plain(getattr(data, field.name), f"{path}.{field.name}")


@pytest.mark.parametrize("kind", KINDS)
def test_example_builds_a_detector_of_its_kind(kind: str) -> None:
    detector = build(example_params(kind))
    assert isinstance(detector, Detector)
    assert detector.kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_parameter_is_rejected_by_name(kind: str) -> None:
    with pytest.raises(DetectorConfigError, match="no_such_parameter"):
        build({**example_params(kind), "no_such_parameter": 1})


@pytest.mark.parametrize("kind", KINDS)
def test_score_does_not_change_state(kind: str) -> None:
    detector = build(example_params(kind))
    for index, (value, at, n) in enumerate(stream(10, 5)):
        if index % 97 == 0:
            before = detector.snapshot()
            detector.score(value, at, n=n)
            detector.score(value * 10, at, n=n)
            assert detector.snapshot() == before, f"score changed the state at point {index}"
        detector.learn(value, at, n=n)


@pytest.mark.parametrize("kind", KINDS)
def test_fresh_detector_is_not_ready_or_ready_with_a_real_score(kind: str) -> None:
    """Not ready means None; a detector that is ready at once (threshold) gives a real Score."""
    value, at, n = stream(10, 5)[0]
    score = build(example_params(kind)).score(value, at, n=n)
    assert score is None or (isinstance(score, Score) and score.detector == kind)


@pytest.mark.parametrize("kind", KINDS)
def test_scores_are_well_formed_once_ready(kind: str) -> None:
    points = stream(10, 5)
    scores = run(build(example_params(kind)), points)
    ready = [(s, p) for s, p in zip(scores, points, strict=True) if s is not None]
    assert ready, f"{kind} never became ready over 10 days"
    for score, _ in ready:  # value: the point, or for window detectors the statistic compared
        assert score.detector == kind
        assert np.isfinite(score.value)
        assert 0.0 <= score.anomaly <= 1.0
        assert np.isfinite(score.baseline) and np.isfinite(score.spread) and score.spread >= 0
        assert not score.is_onset or score.is_anomalous
        assert isinstance(score.detail, str)


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot_is_versioned_plain_frozen_data(kind: str) -> None:
    detector = build(example_params(kind))
    run(detector, stream(10, 5)[:2000])
    state = detector.snapshot()
    assert dataclasses.is_dataclass(state) and hasattr(type(state), "__slots__")
    assert isinstance(getattr(state, "version", None), int), "snapshot has no int version"
    assert_plain(state, "snapshot")


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot_pickles(kind: str) -> None:
    detector = build(example_params(kind))
    run(detector, stream(10, 5)[:2000])
    state = detector.snapshot()
    assert pickle.loads(pickle.dumps(state)) == state  # noqa: S301  (our own snapshot)


@pytest.mark.parametrize("kind", KINDS)
def test_restore_mid_stream_continues_exactly(kind: str) -> None:
    points = stream(10, 5)
    middle = 8 * 288  # day 8, so baselines of up to 7 days are ready before and after
    original = build(example_params(kind))
    run(original, points[:middle])
    state = pickle.loads(pickle.dumps(original.snapshot()))  # noqa: S301  (our own snapshot)
    restored = type(original).restore(state)
    assert restored.snapshot() == original.snapshot()
    assert run(restored, points[middle:]) == run(original, points[middle:])
    assert restored.snapshot() == original.snapshot()


@pytest.mark.parametrize("kind", KINDS)
def test_restore_refuses_a_snapshot_of_another_version(kind: str) -> None:
    """A snapshot of another state layout is refused by name, not misread."""
    detector = build(example_params(kind))
    run(detector, stream(2, 60))
    state = detector.snapshot()
    for version in (state.version - 1, state.version + 1):
        with pytest.raises(ValueError, match=f"^{kind} snapshot version {version}; expected "
                                             f"{state.version}$"):
            type(detector).restore(dataclasses.replace(state, version=version))
    assert type(detector).restore(state).snapshot() == state


@pytest.mark.parametrize("kind", KINDS)
def test_state_size_stays_flat_over_two_weeks_of_minutes(kind: str) -> None:
    """Pickled state after 2, 7 and 14 days of one point a minute differs by at most 10%
    (+ 256 bytes): state is bounded by configuration, not by traffic."""
    detector = build(example_params(kind))
    points = stream(14, 1)
    sizes = {}
    for day in range(14):
        run(detector, points[day * 1440:(day + 1) * 1440])
        if day + 1 in (2, 7, 14):
            sizes[day + 1] = len(pickle.dumps(detector.snapshot()))
    assert max(sizes.values()) - min(sizes.values()) <= 0.1 * min(sizes.values()) + 256, sizes
