"""Folding many spans at once (`Bucket.fold_plans`, `fold_planned`, pre-aggregation's shared
session and slot work) must leave exactly the state that folding them one by one leaves.

The one-by-one reference here applies a plan with the bounded containers' single-item
operations (`offer`, `add`), in order, as folding did before batches; label caps, version sets
and exemplar sets are pushed past their bounds so that order-dependent parts are exercised.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan, TraceContext
from metrics import partial as partial_module
from metrics.bounded import BoundedSet, Exemplar, WorstSpans
from metrics.bucket import Bucket, SpanPlan, event_unix_ns, minute_of, plan_of
from metrics.evals import DEFAULT_CATEGORIES
from metrics.partial import KeyFunction, LabelKeys, fold_planned, preaggregate_each
from metrics.series import SeriesKey, series_key
from metrics.sessions import SessionTouch, touch_of
from metrics.sketch import QuantileSketch
from tests.metrics.strategies import T0, Record, records, spans

TRACES = [f"{i:032x}" for i in range(6)]
"""Few trace ids: exemplars of one trace must collapse to its worst span."""
MANY = [f"label-{i:02d}" for i in range(40)]
"""More labels than a `CappedCounts` (24) or a version set (8) keeps."""
CONTEXT = TraceContext(service="checkout", session_id="s1")


@st.composite
def crowded_spans(draw: st.DrawFn) -> LLMSpan:
    """A span whose labels and versions come from pools larger than the bounds."""
    span = draw(spans(span_ns=2 * 60 * 10**9))
    context = replace(span.context,
                      prompt_template_version=draw(st.none() | st.sampled_from(MANY)),
                      app_version=draw(st.none() | st.just("") | st.sampled_from(MANY)))
    is_call = span.kind in ("llm", "embedding")
    return replace(
        span, context=context, trace_id=draw(st.sampled_from(TRACES)),
        request_model=draw(st.none() | st.sampled_from(MANY)),
        finish_reasons=(tuple(draw(st.lists(st.sampled_from(MANY), max_size=3)))
                        if span.kind == "llm" else ()),
        error_kind=draw(st.sampled_from(MANY)) if span.is_error else None,
        unknown_cost_reason=(draw(st.sampled_from(MANY))
                             if is_call and span.cost_usd is None else None))


def fold_one_by_one(bucket: Bucket, plan: SpanPlan) -> None:
    """A plan applied item by item with the containers' single-item operations."""
    shape = plan.shape
    for name in shape.flags:
        setattr(bucket, name, getattr(bucket, name) + 1)
    for name, delta in zip(("cost_sum_pusd", "input_tokens_sum", "output_tokens_sum"),
                           plan.sums, strict=True):
        setattr(bucket, name, getattr(bucket, name) + delta)
    at = plan.event_unix_ns
    bucket.min_event_unix_ns = min(at, bucket.min_event_unix_ns or at)
    bucket.max_event_unix_ns = max(at, bucket.max_event_unix_ns or at)
    bucket.exemplars.offer(plan.exemplar)
    for value, kept in zip(shape.versions, (bucket.prompt_template_versions, bucket.models,
                                            bucket.app_versions), strict=True):
        if value:
            kept.add(value)
    for index, key in plan.sketch_keys:
        sketch = bucket.sketches[index]
        if sketch is None:
            sketch = bucket.sketches[index] = QuantileSketch()
        sketch.add_key(key)
    if shape.error_kind is not None:
        bucket.error_kinds.add(shape.error_kind)
    if shape.unknown_cost is not None:
        bucket.unknown_cost.add(shape.unknown_cost)
    if plan.cost_usage is not None:
        bucket.cost_mix.add(plan.cost_usage)
    for reason in shape.finish_reasons:
        bucket.finish_reasons.add(reason)
    for score in plan.scores:
        bucket._fold_score(score, plan.exemplar[2], DEFAULT_CATEGORIES)


def _chunks(items: list[SpanPlan], rnd: random.Random) -> list[list[SpanPlan]]:
    out, rest = [], items[:]
    while rest:
        cut = rnd.randint(1, max(1, len(rest)))
        out.append(rest[:cut])
        rest = rest[cut:]
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(crowded_spans() | spans(), max_size=80), st.randoms(use_true_random=False))
def test_fold_plans_equals_folding_one_by_one(batch: list[LLMSpan], rnd: random.Random) -> None:
    plans = [plan_of(span) for span in batch]
    reference, single, at_once, in_chunks = Bucket(), Bucket(), Bucket(), Bucket()
    for plan in plans:
        fold_one_by_one(reference, plan)
        single.fold_plan(plan)
    at_once.fold_plans(plans)
    for chunk in _chunks(plans, rnd):  # batches landing on a bucket that already holds some
        in_chunks.fold_plans(chunk)
    want = reference.to_state()
    assert single.to_state() == want
    assert at_once.to_state() == want
    assert in_chunks.to_state() == want


@st.composite
def failing_calls(draw: st.DrawFn) -> LLMSpan:
    """Failed, unpriced llm calls with finish reasons: every label container in use."""
    span = draw(crowded_spans())
    return replace(span, kind="llm", is_error=True, cost_usd=None,
                   error_kind=draw(st.sampled_from(MANY)),
                   unknown_cost_reason=draw(st.sampled_from(MANY)),
                   finish_reasons=tuple(draw(st.lists(st.sampled_from(MANY), min_size=1,
                                                      max_size=2))))


@settings(max_examples=20, deadline=None)
@given(st.lists(failing_calls(), min_size=30, max_size=36))
def test_full_label_caps_keep_the_labels_seen_first(batch: list[LLMSpan]) -> None:
    """Past 23 distinct labels, which get their own count depends on the order labels first
    appear: folding at once must keep that order."""
    reference, at_once = Bucket(), Bucket()
    for span in batch:
        fold_one_by_one(reference, plan_of(span))
    at_once.fold_plans([plan_of(span) for span in batch])
    assert at_once.finish_reasons.items == reference.finish_reasons.items
    assert at_once.error_kinds.items == reference.error_kinds.items
    assert at_once.unknown_cost.items == reference.unknown_cost.items
    assert at_once.to_state() == reference.to_state()


@settings(max_examples=60, deadline=None)
@given(records(max_size=40))
def test_fold_planned_with_evaluations_equals_folding_each_record(recs: list[Record]) -> None:
    direct, planned = Bucket(), Bucket()
    for record in recs:
        direct.fold(record)
    fold_planned(planned, [plan_of(r) if isinstance(r, LLMSpan) else r for r in recs])
    assert planned.to_state() == direct.to_state()


def test_equal_shapes_that_are_distinct_objects_fold_alike() -> None:
    """Shapes are interned, but a plan from another process (or after the memo was cleared)
    carries an equal shape of its own: it still counts."""
    span = LLMSpan(trace_id=TRACES[0], span_id="s", parent_span_id=None, kind="llm", name="n",
                   start_unix_ns=T0, end_unix_ns=T0 + 10**9, context=CONTEXT,
                   request_model="m", finish_reasons=("stop",), cost_usd=0.5)
    plan = plan_of(span)
    copy = plan._replace(shape=type(plan.shape)(*plan.shape))
    assert copy.shape == plan.shape
    assert copy.shape is not plan.shape
    one, other = Bucket(), Bucket()
    one.fold_plans([plan, copy, plan])
    for item in (plan, plan, plan):
        other.fold_plan(item)
    assert one.to_state() == other.to_state()
    assert one.finish_reasons.items == (("stop", 3),)


# --- the bounded containers' batch operations ---------------------------------------------------

_exemplar = st.tuples(st.booleans(), st.integers(0, 50), st.sampled_from(TRACES + MANY))


@given(st.lists(_exemplar, max_size=20), st.lists(_exemplar, max_size=120))
def test_offer_many_equals_offering_each(kept: list[Exemplar], items: list[Exemplar]) -> None:
    one_by_one, at_once = WorstSpans(5, kept), WorstSpans(5, kept)
    for item in items:
        one_by_one.offer(item)
    at_once.offer_many(items)
    assert at_once.items == one_by_one.items


@given(st.lists(st.sampled_from(MANY), max_size=12),
       st.lists(st.none() | st.just("") | st.sampled_from(MANY), max_size=30))
def test_bounded_set_update_equals_adding_each(kept: list[str],
                                               values: list[str | None]) -> None:
    one_by_one, at_once = BoundedSet(8, kept), BoundedSet(8, kept)
    for value in values:
        if value:
            one_by_one.add(value)
    at_once.update(values)
    assert (at_once.values, at_once.is_truncated) == (one_by_one.values,
                                                      one_by_one.is_truncated)
    merged = BoundedSet(8, kept)
    merged.merge([v for v in values if v is not None], False)
    for value in values:
        if value is not None:  # merge keeps "" (as `add` does), unlike `update`
            one_by_one.add(value)
    assert (merged.values, merged.is_truncated) == (one_by_one.values, one_by_one.is_truncated)


# --- pre-aggregation: shared buckets, sessions, slot ids ----------------------------------------

GROUPINGS = [("service",), ("model", "service"), (), ("service", "prompt_template_version")]


def _grouping(group: tuple[str, ...]) -> KeyFunction:
    return lambda record: series_key(record, group)


def _reference_sessions(recs: list[Record], group: tuple[str, ...]
                        ) -> dict[tuple[SeriesKey, int], tuple[SessionTouch, ...]]:
    """Touches merged per (series, minute, session), the plain way."""
    out: dict[tuple[SeriesKey, int], dict[str, SessionTouch]] = {}
    for record in recs:
        touch = touch_of(record) if isinstance(record, LLMSpan) else None
        slot = out.setdefault((series_key(record, group), minute_of(event_unix_ns(record))), {})
        if touch is None:
            continue
        old = slot.get(touch.session_id)
        slot[touch.session_id] = touch if old is None else SessionTouch(
            touch.session_id, min(old.first_unix_ns, touch.first_unix_ns),
            max(old.last_unix_ns, touch.last_unix_ns), old.cost_pusd + touch.cost_pusd,
            old.priced_calls + touch.priced_calls, old.calls + touch.calls)
    return {slot: tuple(sorted(touches.values(), key=lambda t: t.session_id))
            for slot, touches in out.items()}


@pytest.mark.parametrize(("planned_max", "shared_min"), [(8, 16), (0, 2), (3, 1)])
@settings(max_examples=40, deadline=None)
@given(recs=records(span_ns=3 * 60 * 10**9, max_size=80))
def test_preaggregation_equals_folding_each_record_per_slot(
        recs: list[Record], planned_max: int, shared_min: int) -> None:
    """Whatever travels as plans or folded buckets, through shared buckets or not."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(partial_module, "PLANNED_MAX", planned_max)
        patch.setattr(partial_module, "SHARED_FOLD_MIN", shared_min)
        functions = [_grouping(g) for g in GROUPINGS]
        got = preaggregate_each(recs, functions)
        keyed = preaggregate_each(recs, functions, keys_of=LabelKeys(functions))
    assert keyed == got
    expected: dict[tuple[int, SeriesKey, int], Bucket] = {}
    for index, group in enumerate(GROUPINGS):
        for record in recs:
            slot = (index, series_key(record, group), minute_of(event_unix_ns(record)))
            expected.setdefault(slot, Bucket()).fold(record)
    assert [(i, p.key, p.minute_start_unix_ns) for i, p in got] == sorted(expected)
    for index, partial in got:
        slot = (index, partial.key, partial.minute_start_unix_ns)
        assert partial.bucket.to_state() == expected[slot].to_state()
        assert (partial.folded is None) == (partial.records <= planned_max)
        sessions = _reference_sessions(recs, GROUPINGS[index])
        assert partial.sessions == sessions[partial.key, partial.minute_start_unix_ns]


def test_label_keys_keep_slot_ids_within_a_batch_and_bound_them_between() -> None:
    functions = [_grouping(g) for g in GROUPINGS]
    keys_of = LabelKeys(functions, max_entries=2)
    batch = [replace(span, context=replace(span.context, service=f"svc-{i}"))
             for i, span in enumerate(_plain_spans(12))]
    first = [keys_of.entry(record) for record in batch]  # the memo is cleared on the way
    again = [keys_of.entry(record) for record in batch]
    assert [ids for _, ids in first] == [ids for _, ids in again]
    for (keys, ids) in first:
        for index, (key, slot_id) in enumerate(zip(keys, ids, strict=True)):
            assert keys_of.ids.slot_keys[slot_id] == (index, key)  # type: ignore[index]
    keys_of.start_batch()  # over the bound: ids start afresh, between batches only
    assert len(keys_of.ids.slot_keys) == 0
    assert [keys_of(record) for record in batch] == [keys for keys, _ in first]


def _plain_spans(n: int) -> list[LLMSpan]:
    return [LLMSpan(trace_id=TRACES[i % len(TRACES)], span_id=f"{i}", parent_span_id=None,
                    kind="llm", name="n", start_unix_ns=T0 + i, end_unix_ns=T0 + i + 10**9,
                    context=CONTEXT, request_model="m")
            for i in range(n)]
