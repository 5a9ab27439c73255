"""Packed bucket blobs (format 2) and one-pass pre-aggregation over several key functions."""

from __future__ import annotations

import pickle
import zlib

from hypothesis import given, settings

from ingest.span import LLMSpan
from metrics.bucket import Bucket, event_unix_ns, minute_of, plan_of
from metrics.bucket_state import pack, unpack
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
