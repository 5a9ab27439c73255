"""Adding many sketch keys at once (`QuantileSketch.add_keys`, `Bucket.fold_plans`' batch path)
must leave exactly the state that adding them one by one (`add_key`, `fold_plan`) leaves: the
same counts, zeros, live bins (in the same order), payload, quantiles and packed bytes, also
when the bins pass the bound and collapse on the way.

Hypothesis tests shrink `BIN_LIMIT` so that collapses happen with small inputs; the seeded ones
use the real bound with thousands of distinct keys."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan, TraceContext
from metrics import bucket as bucket_module
from metrics import sketch as sketch_module
from metrics.bucket import SKETCHES, Bucket, SpanPlan, plan_of
from metrics.sketch import BIN_LIMIT, QuantileSketch
from tests.metrics.strategies import T0, spans

SMALL_LIMIT = 6
"""A bin bound that a few dozen distinct keys pass (collapses at 2 * 6 = 12 live bins)."""
keys = st.none() | st.integers(-4, 4) | st.integers(-60, 60)
CONTEXT = TraceContext(service="checkout", session_id="s1")


@contextmanager
def bin_limit(limit: int) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sketch_module, "BIN_LIMIT", limit)
        yield


def observed(sketch: QuantileSketch) -> tuple[Any, ...]:
    """Everything a sketch shows: live fields with the bins' order, then (materialising the
    bins) its state and quantiles."""
    count, zeros, bins = sketch.live_fields()
    live = (count, zeros, list(bins.items()) if isinstance(bins, dict) else bins)
    return (sketch.count, live, sketch.state_fields(),
            [sketch.quantile(q) for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0)])


def prefilled(before: Sequence[int | None], payload_of: list[int | None]) -> QuantileSketch:
    """A sketch with live bins (`before`) and a merged payload (of `payload_of`)."""
    sketch = QuantileSketch()
    if payload_of:
        other = QuantileSketch()
        for key in payload_of:
            other.add_key(key)
        sketch.merge_state(other.to_state())
    for key in before:
        sketch.add_key(key)
    return sketch


def one_by_one_and_at_once(before: Sequence[int | None], payload_of: list[int | None],
                           batches: list[list[int | None]]) -> tuple[QuantileSketch,
                                                                       QuantileSketch]:
    each, at_once = prefilled(before, payload_of), prefilled(before, payload_of)
    for batch in batches:
        for key in batch:
            each.add_key(key)
        at_once.add_keys(batch)
    return each, at_once


@settings(max_examples=300, deadline=None)
@given(st.lists(keys, max_size=30), st.lists(keys, max_size=20),
       st.lists(st.lists(keys, max_size=40), max_size=5))
def test_add_keys_equals_add_key_of_each_in_turn(before: list[int | None],
                                                 payload_of: list[int | None],
                                                 batches: list[list[int | None]]) -> None:
    with bin_limit(SMALL_LIMIT):
        each, at_once = one_by_one_and_at_once(before, payload_of, batches)
        assert observed(at_once) == observed(each)


@pytest.mark.parametrize("seed", range(4))
def test_add_keys_beyond_the_real_bin_limit_collapses_as_one_by_one(seed: int) -> None:
    rnd = random.Random(seed)
    wide = [None if rnd.random() < 0.05 else rnd.randint(-3000, 3000) for _ in range(5000)]
    few = [rnd.choice([None, -2, 0, 7]) for _ in range(3000)]  # many keys, few distinct
    before = [rnd.randint(-3000, 3000) for _ in range(rnd.choice([0, 100, 2000]))]
    batches = [wide[:1500], few, wide[1500:], few[:10]]
    each, at_once = one_by_one_and_at_once(before, [], batches)
    assert observed(at_once) == observed(each)
    assert each.count == len(before) + sum(map(len, batches))


def test_a_batch_that_would_pass_the_bound_only_on_the_way_is_added_as_one_by_one() -> None:
    """2 * BIN_LIMIT bins then one more distinct key: one by one collapses on that key, so
    the batch must too (and not merely keep 2 * BIN_LIMIT + 1 bins)."""
    batch: list[int | None] = [*range(2 * BIN_LIMIT), 5000]
    each, at_once = one_by_one_and_at_once([], [], [batch])
    _, _, bins = at_once.live_fields()
    assert isinstance(bins, dict)
    assert len(bins) <= BIN_LIMIT + 1  # collapsed to the bound below the largest key
    assert min(bins) == 5000 - BIN_LIMIT + 1
    assert observed(at_once) == observed(each)


def test_zeros_only_leave_a_sketch_without_bins() -> None:
    sketch = QuantileSketch()
    sketch.add_keys([None, None, None])
    assert sketch.live_fields() == (3, 3, {})
    assert sketch.state_fields() == (3, 3, b"")
    assert sketch.quantile(0.99) == 0.0
    sketch.add_keys([])
    assert sketch.count == 3


# --- Bucket.fold_plans: plans with many keys ---------------------------------------------------

sketch_keys = st.lists(st.tuples(st.integers(0, len(SKETCHES) - 1) | st.just(2), keys),
                       max_size=8)
"""Any sketch, one of them more often (so that its bins pass a small bound)."""


@st.composite
def keyed_plans(draw: st.DrawFn) -> SpanPlan:
    """A span's plan with random sketch keys (zeros, wide ranges, any sketch)."""
    return plan_of(draw(spans()))._replace(sketch_keys=tuple(draw(sketch_keys)))


def assert_same_buckets(want: Bucket, *others: Bucket) -> None:
    """Live sketches first: packing materialises (and so changes) a sketch beyond the bound."""
    buckets = (want, *others)
    live = [[None if s is None else observed_live(s) for s in b.sketches] for b in buckets]
    packed = [b.pack() for b in buckets]
    states = [b.to_state() for b in buckets]
    for got in range(1, len(buckets)):
        assert live[got] == live[0]
        assert packed[got] == packed[0]
        assert states[got] == states[0]


def observed_live(sketch: QuantileSketch) -> tuple[Any, ...]:
    count, zeros, bins = sketch.live_fields()
    return count, zeros, list(bins.items()) if isinstance(bins, dict) else bins


@pytest.mark.parametrize("limit", [SMALL_LIMIT, BIN_LIMIT])
@settings(max_examples=80, deadline=None)
@given(plans=st.lists(keyed_plans(), max_size=60), rnd=st.randoms(use_true_random=False))
def test_fold_plans_with_many_keys_equals_fold_plan_of_each(limit: int, plans: list[SpanPlan],
                                                            rnd: random.Random) -> None:
    with bin_limit(limit):
        each, at_once, in_chunks = Bucket(), Bucket(), Bucket()
        for plan in plans:
            each.fold_plan(plan)
        at_once.fold_plans(plans)
        rest = plans[:]
        while rest:
            cut = rnd.randint(1, len(rest))
            in_chunks.fold_plans(rest[:cut])
            rest = rest[cut:]
        assert_same_buckets(each, at_once, in_chunks)


@pytest.mark.parametrize("one_by_one_max", [0, bucket_module.FOLD_ONE_BY_ONE_MAX])
def test_fold_plans_beyond_the_real_bin_limit_equals_fold_plan_of_each(
        one_by_one_max: int) -> None:
    rnd = random.Random(one_by_one_max)
    base = [plan_of(LLMSpan(
        trace_id=f"{i % 7:032x}", span_id=f"{i}", parent_span_id=None if i % 3 else "p",
        kind=("llm", "embedding", "retrieval", "request")[i % 4], name="n",
        start_unix_ns=T0 + i, end_unix_ns=T0 + i + 10**9 * (i % 5), context=CONTEXT,
        request_model=f"m{i % 3}", is_error=i % 6 == 0, cost_usd=0.25 * (i % 4) or None,
        finish_reasons=("stop", "length")[:i % 3])) for i in range(20)]

    def plan(i: int) -> SpanPlan:
        return base[i % len(base)]._replace(sketch_keys=tuple(
            (rnd.choice([1, 2, 5]),  # few sketches: their bins pass the bound and collapse
             None if rnd.random() < 0.05 else rnd.randint(-3000, 3000))
            for _ in range(rnd.randint(0, 6))))

    plans = [plan(i) for i in range(4000)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bucket_module, "FOLD_ONE_BY_ONE_MAX", one_by_one_max)
        each, batched = Bucket(), Bucket()
        for item in plans:
            each.fold_plan(item)
        for start in (0, 3, 9, 40, 1000):  # batches of 3, 6, 31, 960 and 3000 plans
            end = {0: 3, 3: 9, 9: 40, 40: 1000, 1000: len(plans)}[start]
            batched.fold_plans(plans[start:end])
    assert_same_buckets(each, batched)
