"""Exemplars, version sets and capped counts: bounded, and independent of order."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from metrics.bounded import OTHER, BoundedSet, CappedCounts, Exemplar, WorstSpans

exemplars = st.lists(st.tuples(st.booleans(), st.integers(0, 10**10),
                               st.sampled_from([f"t{i}" for i in range(12)])), max_size=40)


@given(exemplars, st.randoms(use_true_random=False))
def test_worst_spans_are_the_worst_distinct_traces_in_any_order(
        items: list[Exemplar], rnd: random.Random) -> None:
    worst_per_trace: dict[str, Exemplar] = {}
    for item in items:
        worst_per_trace[item[2]] = max(worst_per_trace.get(item[2], item), item)
    want = tuple(sorted(worst_per_trace.values(), reverse=True)[:5])
    shuffled = items[:]
    rnd.shuffle(shuffled)
    cut = rnd.randint(0, len(shuffled))
    left, right = WorstSpans(5, shuffled[:cut]), WorstSpans(5, shuffled[cut:])
    left.merge(right.items)
    assert left.items == want == WorstSpans(5, items).items


def test_errors_rank_before_slow_spans() -> None:
    worst = WorstSpans(2, [(False, 9_000, "slow"), (True, 1, "failed"), (False, 5, "fast")])
    assert worst.trace_ids == ("failed", "slow")


@given(st.lists(st.sampled_from([f"v{i}" for i in range(15)]), max_size=40),
       st.randoms(use_true_random=False))
def test_bounded_set_keeps_the_smallest_and_flags_the_rest(values: list[str],
                                                           rnd: random.Random) -> None:
    distinct = sorted(set(values))
    cut = rnd.randint(0, len(values))
    left, right = BoundedSet(8, values[:cut]), BoundedSet(8, values[cut:])
    left.merge(right.values, right.is_truncated)
    assert left.values == tuple(distinct[:8])
    assert left.is_truncated == (len(distinct) > 8)


def test_capped_counts_keep_exact_totals_past_the_cap() -> None:
    counts = CappedCounts(3, [("a", 1), ("b", 2), ("c", 3), ("d", 4)])
    assert counts.items == (("a", 1), ("b", 2), (OTHER, 7))
    assert counts.total == 10
