"""`QuantileSketch._materialise` sums a few small payloads in plain Python (`_plain_dense`,
`_encode_counts`; `_run_of` is checked against `_decode` in test_sketch.py): the same bins,
quantiles and canonical payload as numpy's path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metrics.sketch as sketch_module
from metrics.sketch import (
    BIN_LIMIT,
    QuantileSketch,
    _encode_counts,
    _encode_dense,
)

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0)
minutes = st.lists(st.just(0.0) | st.floats(1e-3, 1e3) | st.sampled_from([0.2, 0.21, 0.3, 1.0]),
                   min_size=1, max_size=60)


def _sketch(xs: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    for x in xs:
        sketch.add(x)
    return sketch


def _view(parts: list[list[float]], adds: list[float]) -> QuantileSketch:
    """A view's sketch: minutes merged as payloads (lazily), then some values added."""
    view = QuantileSketch()
    for xs in parts:
        view.merge_parts(*_sketch(xs).state_fields())
    for x in adds:
        view.add(x)
    return view


def _read(view: QuantileSketch) -> tuple[object, ...]:
    quantiles = tuple(view.quantile(q) for q in QUANTILES)
    dense = view._materialise()
    return quantiles, (dense[0], list(dense[1]), list(dense[2])), view.payload(), \
        tuple(view._parts), dict(view._adds)


@settings(max_examples=300, deadline=None)
@given(st.lists(minutes, min_size=1, max_size=5), st.lists(st.floats(1e-3, 1e3), max_size=5))
def test_plain_python_and_numpy_sums_read_the_same(parts: list[list[float]],
                                                   adds: list[float]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sketch_module, "PLAIN_SUM_MAX", 0)  # numpy for every sum
        by_numpy = _read(_view(parts, adds))
        patch.setattr(sketch_module, "PLAIN_SUM_MAX", 10**9)  # plain Python where it can
        plain = _view(parts, adds)
        summed = bool(plain._adds) or len(plain._parts) > 1  # more than one run of bins
        calls: list[object] = []
        original = QuantileSketch._plain_dense

        def spy(self: QuantileSketch) -> object:
            calls.append(self)
            return original(self)

        patch.setattr(QuantileSketch, "_plain_dense", spy)
        assert _read(plain) == by_numpy
    if summed:
        assert calls, "a sum of several runs took the plain path"


def test_bins_past_the_limit_take_numpy_and_collapse() -> None:
    wide = QuantileSketch()
    wide.merge_parts(*_sketch([1e-200, 1e-100, 1.0]).state_fields())
    wide.merge_parts(*_sketch([2.0, 1e200]).state_fields())
    assert wide._plain_dense() is None
    assert wide._parts and len(wide._parts) == 2, "left as it was"
    assert len(wide._materialise()[1]) <= BIN_LIMIT
    assert wide.quantile(1.0) == pytest.approx(1e200, rel=0.01)


@settings(max_examples=300, deadline=None)
@given(st.integers(-2000, 2000),
       st.lists(st.integers(0, 300) | st.just(0), min_size=1, max_size=80))
def test_encode_counts_is_encode_dense(low: int, row: list[int]) -> None:
    assert _encode_counts(low, row) == _encode_dense(low, np.array(row, np.int64))
