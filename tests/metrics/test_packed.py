"""Packed bucket blobs (format 2) and one-pass pre-aggregation over several key functions."""

from __future__ import annotations

import pickle
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan
from metrics.bucket import Bucket, event_unix_ns, minute_of, plan_of
from metrics.bucket_state import COUNTERS, STATE_VERSION, BucketState, fields_of, pack, unpack
from metrics.partial import KeyFunction, preaggregate_each
from metrics.series import SeriesKey, series_key
from tests.metrics.strategies import Record, records


def _bucket_of(recs: list[Record]) -> Bucket:
    bucket = Bucket()
    for record in recs:
        bucket.fold(record)
    return bucket


@settings(max_examples=60, deadline=None)
@given(records(max_size=40))
def test_a_packed_state_comes_back_exactly_and_merges_like_the_state(recs: list[Record]) -> None:
    state = _bucket_of(recs).to_state()
    blob = pack(state)
    assert blob[0] == 2
    assert unpack(blob) == state
    via_blob, via_state = Bucket(), Bucket()
    for _ in range(2):  # merging twice also exercises adding to non-empty counters
        via_blob.merge_packed(blob)
        via_state.merge_state(state)
    assert via_blob.to_state() == via_state.to_state()


@settings(max_examples=30, deadline=None)
@given(records(min_size=1, max_size=30))
def test_format_1_blobs_of_older_snapshots_still_load(recs: list[Record]) -> None:
    state = _bucket_of(recs).to_state()
    old = zlib.compress(pickle.dumps(state, protocol=5), 1)
    assert unpack(old) == state
    merged = Bucket()
    merged.merge_packed(old)
    assert merged.to_state() == state


@settings(max_examples=30, deadline=None)
@given(records(min_size=20, max_size=40))
def test_format_2_is_smaller_than_format_1(recs: list[Record]) -> None:
    state = _bucket_of(recs).to_state()
    assert len(pack(state)) < len(zlib.compress(pickle.dumps(state, protocol=5), 1))


@settings(max_examples=60, deadline=None)
@given(records(max_size=60))
def test_one_pass_over_several_groupings_equals_folding_each_record_per_grouping(
        recs: list[Record]) -> None:
    groupings = [("service",), ("model", "service"), (), ("service",)]  # one repeated
    expected: dict[tuple[int, SeriesKey, int], Bucket] = {}
    for index, group in enumerate(groupings):
        for record in recs:
            key = series_key(record, group)
            slot = (index, key, minute_of(event_unix_ns(record)))
            expected.setdefault(slot, Bucket()).fold(record)
    got = preaggregate_each(recs, [_grouping(g) for g in groupings])
    assert {(i, p.key, p.minute_start_unix_ns): p.bucket.to_state() for i, p in got} \
        == {slot: bucket.to_state() for slot, bucket in expected.items()}
    assert [(i, p.key, p.minute_start_unix_ns) for i, p in got] == sorted(expected)


def _grouping(group: tuple[str, ...]) -> KeyFunction:
    return lambda record: series_key(record, group)


@settings(max_examples=40, deadline=None)
@given(records(max_size=30))
def test_folding_a_plan_equals_folding_the_span(recs: list[Record]) -> None:
    direct, planned = Bucket(), Bucket()
    for record in recs:
        direct.fold(record)
        if isinstance(record, LLMSpan):
            planned.fold_plan(plan_of(record))
        else:
            planned.fold(record)
    assert planned.to_state() == direct.to_state()


# --- packing a live bucket without its BucketState ---------------------------------------------

Recipe = tuple[list[Record], int, list[tuple[int, int, bool]], int]
"""(records, how many leading records go in as packed blobs, closed sessions, repeats)."""


@st.composite
def recipes(draw: st.DrawFn) -> Recipe:
    recs = draw(records(max_size=40))
    sessions = draw(st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 3), st.booleans()),
                             max_size=3))
    # repeats > 255 put counts above one byte in a bin (the wide encoder)
    return recs, draw(st.integers(0, len(recs))), sessions, draw(st.sampled_from([1, 2, 300]))


def _built(recipe: Recipe) -> Bucket:
    """A bucket as the window stage holds one: records folded on top of merged blobs (sketches
    with payload parts and live bins), closed sessions, too-late counts."""
    recs, packed, sessions, repeats = recipe
    bucket = Bucket()
    for start in range(0, packed, 7):  # up to 6 blobs: sketches of several payload parts
        bucket.merge_packed(pack(_bucket_of(recs[start:min(packed, start + 7)]).to_state()))
    for record in recs[packed:]:
        for _ in range(repeats if isinstance(record, LLMSpan) else 1):
            bucket.fold(record)
    for cost, calls, early in sessions:
        bucket.fold_session(cost, calls, is_early=early)
    bucket.too_late += len(sessions)
    return bucket


@settings(max_examples=150, deadline=None)
@given(recipes())
def test_packing_a_bucket_writes_the_bytes_of_packing_its_state(recipe: Recipe) -> None:
    # Two equal buckets: packing either one sums its sketches' parts (and caches the sum), so
    # each path must start from a bucket the other has not touched.
    direct, via_state = _built(recipe), _built(recipe)
    state = _state_by_name(via_state)
    assert direct.fields() == fields_of(state)
    assert direct.pack() == pack(state)
    assert direct.pack() == pack(state)  # again, now from the cached sums
    assert via_state.to_state() == state
    assert unpack(direct.pack()) == state


def test_packing_an_empty_bucket() -> None:
    assert Bucket().pack() == pack(Bucket().to_state())
    assert unpack(Bucket().pack()) == Bucket().to_state()


def _state_by_name(bucket: Bucket) -> BucketState:
    """`to_state` spelled out field by field (the reference: `Bucket.to_state` and
    `Bucket.fields` share one positional builder, so they cannot check each other's order)."""
    return BucketState(
        version=STATE_VERSION,
        **{name: getattr(bucket, name) for name in COUNTERS},
        session_cost_max_pusd=bucket.session_cost_max_pusd,
        min_event_unix_ns=bucket.min_event_unix_ns,
        max_event_unix_ns=bucket.max_event_unix_ns,
        error_kinds=bucket.error_kinds.items,
        finish_reasons=bucket.finish_reasons.items,
        unknown_cost=bucket.unknown_cost.items,
        sketches=tuple(None if s is None else s.to_state() for s in bucket.sketches),
        exemplars=bucket.exemplars.items,
        safety_failure_traces=bucket.safety_failure_traces.values,
        prompt_template_versions=bucket.prompt_template_versions.values,
        models=bucket.models.values,
        app_versions=bucket.app_versions.values,
        truncated_versions=(bucket.prompt_template_versions.is_truncated,
                            bucket.models.is_truncated, bucket.app_versions.is_truncated),
        cost_mix=bucket.cost_mix.rows,
    )
