"""The quantile sketch: identical to ddsketch, within 1% of numpy, exactly mergeable."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from ddsketch import LogCollapsingLowestDenseDDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.sketch import (
    BIN_LIMIT,
    RELATIVE_ACCURACY,
    QuantileSketch,
    SketchState,
    _encode,
    _encode_bins,
    key_of,
)

# Durations, tokens and rates: 0, and 1e-4..1e4 (8 decades, inside the bin range).
values = st.lists(st.just(0.0) | st.floats(1e-4, 1e4), min_size=1, max_size=300)
QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def _sketch(xs: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    for x in xs:
        sketch.add(x)
    return sketch


@given(values)
def test_quantiles_are_those_of_ddsketch(xs: list[float]) -> None:
    ours = _sketch(xs)
    theirs = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT)
    for x in xs:
        theirs.add(x)
    for q in QUANTILES:
        assert ours.quantile(q) == pytest.approx(theirs.get_quantile_value(q), rel=1e-12)


@settings(max_examples=200)
@given(values)
def test_quantiles_are_within_relative_accuracy_of_numpy_lower(xs: list[float]) -> None:
    ours = _sketch(xs)
    for q in QUANTILES:
        exact = float(np.quantile(xs, q, method="lower"))
        got = ours.quantile(q)
        assert got is not None
        assert abs(got - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9), (q, got, exact)


@given(values, st.randoms(use_true_random=False))
def test_merging_in_any_grouping_equals_one_sketch(xs: list[float], rnd: random.Random) -> None:
    parts: list[QuantileSketch] = [QuantileSketch() for _ in range(rnd.randint(1, 6))]
    for x in xs:
        rnd.choice(parts).add(x)
    # some parts travel as state, then merge in a random tree
    pool: list[QuantileSketch] = [QuantileSketch.from_state(p.to_state()) if rnd.random() < 0.5
                                  else p for p in parts]
    while len(pool) > 1:
        a = pool.pop(rnd.randrange(len(pool)))
        b = pool.pop(rnd.randrange(len(pool)))
        a.merge(b)
        pool.append(a)
    assert pool[0].to_state() == _sketch(xs).to_state()


@given(values)
def test_state_round_trips_exactly(xs: list[float]) -> None:
    sketch = _sketch(xs)
    state = sketch.to_state()
    again = QuantileSketch.from_state(pickle.loads(pickle.dumps(state)))  # noqa: S301
    assert again.to_state() == state
    for q in QUANTILES:
        assert again.quantile(q) == sketch.quantile(q)


def test_empty_sketch_has_no_quantile() -> None:
    assert QuantileSketch().quantile(0.5) is None
    assert QuantileSketch().to_state() == SketchState(0, 0, b"")


def test_zero_negative_nan_and_infinite_values() -> None:
    sketch = _sketch([0.0, -3.0, float("nan"), float("inf"), 2.0])
    assert sketch.count == 3  # NaN and inf ignored, -3 clamped to zero
    assert sketch.quantile(0.0) == 0.0 and sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == pytest.approx(2.0, rel=RELATIVE_ACCURACY)


def test_bins_are_bounded_and_high_quantiles_keep_their_accuracy() -> None:
    rng = np.random.default_rng(7)
    # latencies plus a few absurdly small ones 200 decades lower: these collapse, not the top
    xs = [float(x) for x in 10 ** rng.uniform(-1, 2, 5000)] + [1e-200 * (1 + i) for i in range(50)]
    sketch = _sketch(xs)
    assert len(sketch._materialise()[1]) <= BIN_LIMIT
    low = sketch.quantile(0.0)  # the tiny values read as the lowest kept bin, ~9 decades down
    assert low is not None and 1e-8 < low < 1e-6
    for q in (0.5, 0.95, 0.99, 1.0):
        exact = float(np.quantile(xs, q, method="lower"))
        got = sketch.quantile(q)
        assert got is not None and abs(got - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9)


def test_payloads_are_compact() -> None:
    rng = np.random.default_rng(3)
    small = _sketch([float(x) for x in rng.lognormal(0.5, 0.6, 10)]).to_state()
    large = _sketch([float(x) for x in rng.lognormal(0.5, 0.6, 100_000)]).to_state()
    assert len(small.bins) <= 5 + 10 * 3  # sparse: 2-byte key step + 1-byte count per bin
    assert len(large.bins) <= 5 + 400 * 4  # dense: one count per bin over the range
    assert len(pickle.dumps(small)) < 120


@pytest.mark.parametrize(("xs", "layout"), [
    ([1.0, 1e6], 2),                          # two far-apart values: sparse
    ([1.0] * 5000 + [1.05] * 5000, 1),         # many values in few bins: dense
    ([1.0 + i / 50 for i in range(100)], 0),   # a few values per bin: unary bits
])
def test_every_payload_layout_round_trips(xs: list[float], layout: int) -> None:
    state = _sketch(xs).to_state()
    assert state.bins[0] & 3 == layout
    again = QuantileSketch.from_state(state)
    again.add(2.0)  # forces a decode and re-encode
    reference = _sketch([*xs, 2.0])
    assert again.to_state() == reference.to_state()
    assert again.quantile(0.5) == reference.quantile(0.5)


@given(st.dictionaries(st.integers(-300, 300), st.integers(1, 70_000), min_size=1, max_size=40)
       | st.dictionaries(st.integers(0, 30), st.integers(1, 3), min_size=1, max_size=30))
def test_the_python_encoder_writes_the_numpy_encoders_bytes(bins: dict[int, int]) -> None:
    low = min(bins)
    dense = np.zeros(max(bins) - low + 1, np.int64)
    for key, count in bins.items():
        dense[key - low] = count
    assert _encode_bins(bins) == _encode(low, dense)


def test_live_and_merged_sketches_give_the_same_state() -> None:
    xs = [0.5 + i / 7 for i in range(60)]
    live = _sketch(xs)  # dict bins -> Python encoder
    merged = QuantileSketch()
    merged.merge_state(_sketch(xs[:30]).to_state())
    merged.merge_state(_sketch(xs[30:]).to_state())  # payloads -> numpy encoder
    assert live.to_state() == merged.to_state()
    assert key_of(1.0) == 0
