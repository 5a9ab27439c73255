"""The flow's garbage-collector tuning (`tune_gc`): fewer collections, never none."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from flows.pipeline import GC_THRESHOLDS, tune_gc


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    """A reference cycle nothing else holds: only the cyclic collector can free it."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_raises_default_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.isenabled()


def test_keeps_thresholds_raised_further() -> None:
    higher = (GC_THRESHOLDS[0] * 2, GC_THRESHOLDS[1], GC_THRESHOLDS[2])
    gc.set_threshold(*higher)
    tune_gc()
    assert gc.get_threshold() == higher


def test_cycles_still_reclaimed_without_explicit_collect() -> None:
    """A long-running flow must keep reclaiming cycles on its own: after about a young
    generation's worth of new container objects, a cycle made before them is gone."""
    gc.enable()
    gc.set_threshold(700, 10, 10)
    tune_gc()
    gc.collect()  # start from an empty young generation
    ref = _cycle()
    assert ref() is not None
    kept: list[list[int]] = [[] for _ in range(2 * GC_THRESHOLDS[0])]  # live, as in-flight records
    assert ref() is None
    assert len(kept) == 2 * GC_THRESHOLDS[0]
