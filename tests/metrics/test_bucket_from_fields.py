"""`Bucket.from_fields` (a partial received from another process) must build exactly the bucket
that merging the same fields into an empty bucket builds, and stay independent of the fields it
was given; `BoundedSet.restore` and `WorstSpans.restore` take over a set's own values only.
Also: plans rebuilt by `masked_plan` or received over the wire fold as the originals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan
from metrics.bounded import BoundedSet, Exemplar, WorstSpans
from metrics.bucket import ALL_SKETCHES, Bucket, SpanPlan, masked_plan, plan_of
from metrics.bucket_state import STATE_VERSION
from tests.metrics.strategies import Record, records, spans
from tests.metrics.test_bucket import _bucket as _folded
from tests.metrics.test_fold_plans import TRACES, crowded_spans


@settings(max_examples=80, deadline=None)
@given(st.lists(crowded_spans() | spans(), max_size=40), records(max_size=10), st.booleans())
def test_from_fields_equals_merging_into_an_empty_bucket(
        crowded: list[LLMSpan], recs: list[Record], live: bool) -> None:
    source = _folded([*crowded, *recs])
    source.fold_session(1234, 1, is_early=True)
    fields = source.fields(live=live)
    merged = Bucket()
    merged.merge_fields(fields, live=live)
    built = Bucket.from_fields(fields, live=live)
    assert built.to_state() == merged.to_state() == source.to_state()
    assert built.pack() == merged.pack()
    # Later folds and merges see the same state (nothing is shared with `fields`).
    more = _folded(list(crowded[:5]))
    for bucket in (built, merged):
        bucket.merge(more)
        for span in crowded[:3]:
            bucket.fold_plan(plan_of(span))
    assert built.to_state() == merged.to_state()
    assert source.fields(live=live) == fields


def test_from_fields_rejects_other_versions_and_lengths() -> None:
    fields = _folded([]).fields()
    with pytest.raises(ValueError, match="version"):
        Bucket.from_fields((STATE_VERSION + 1, *fields[1:]))
    with pytest.raises(ValueError, match="counters"):
        Bucket.from_fields(fields[:5])


@given(st.lists(st.text(min_size=1, max_size=3), max_size=20))
def test_bounded_set_restore_equals_merging_into_an_empty_set(values: list[str]) -> None:
    source = BoundedSet(8)
    source.update(values)
    merged, restored = BoundedSet(8), BoundedSet(8)
    merged.merge(source.values, source.is_truncated)
    restored.restore(source.values, source.is_truncated)
    assert (restored.values, restored.is_truncated) == (merged.values, merged.is_truncated)
    if values:
        with pytest.raises(ValueError, match="empty"):
            restored.restore(source.values, source.is_truncated)


exemplars = st.tuples(st.booleans(), st.integers(0, 10**9), st.sampled_from(TRACES))


@given(st.lists(exemplars, max_size=20))
def test_worst_spans_restore_equals_merging_into_empty_ones(items: list[Exemplar]) -> None:
    source = WorstSpans(5)
    source.offer_many(items)
    merged, restored = WorstSpans(5), WorstSpans(5)
    merged.merge(source.items)
    restored.restore(source.items)
    assert restored.items == merged.items
    if items:
        with pytest.raises(ValueError, match="empty"):
            restored.restore(source.items)


@settings(max_examples=80, deadline=None)
@given(spans(), st.integers(0, ALL_SKETCHES))
def test_masked_plan_is_the_plan_with_only_those_keys(span: LLMSpan, sketches: int) -> None:
    plan = plan_of(span)
    masked = masked_plan(plan, sketches)
    kept = tuple(pair for pair in plan.sketch_keys if sketches >> pair[0] & 1)
    assert type(masked) is SpanPlan
    assert masked == plan._replace(sketch_keys=kept)


@settings(max_examples=60, deadline=None)
@given(st.lists(crowded_spans() | spans(), max_size=12))
def test_plans_with_rebuilt_parts_fold_as_the_originals(batch: list[LLMSpan]) -> None:
    """A plan received over the wire holds equal, not identical, parts (its sums among them)."""
    original, rebuilt = Bucket(), Bucket()
    for span in batch:
        plan = plan_of(span)
        original.fold_plan(plan)
        rebuilt.fold_plan(replace_parts(plan))
    assert rebuilt.to_state() == original.to_state()


def replace_parts(plan: SpanPlan) -> SpanPlan:
    # `(*t,)` is a new tuple (`tuple(t)` would be `t` itself).
    return plan._replace(sums=(*plan.sums,),
                         exemplar=(*plan.exemplar,),
                         sketch_keys=tuple([(index, key) for index, key in plan.sketch_keys]))
