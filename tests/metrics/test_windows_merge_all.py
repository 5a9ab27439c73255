"""`windows.merge_all` (the rollups' merge of many blobs) gives the state of merging them one by
one: the same packed bytes, including where merge order matters (capped label counts, more
models than the cost mix keeps, lone sketch payloads)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import EvalResult, LLMSpan
from metrics.bucket import LABEL_LIMIT, SKETCHES, Bucket
from metrics.bucket_state import COUNTERS, unpack_fields
from metrics.cost_mix import MIX_LIMIT
from metrics.sketch import QuantileSketch
from metrics.windows import merge_all
from tests.metrics.strategies import T0, records

# More labels, models and versions than a bucket keeps, so caps and pools are reached.
LABELS = [f"label{i:02d}" for i in range(LABEL_LIMIT + 6)]
MODELS = [f"model{i:02d}" for i in range(MIX_LIMIT + 4)]
VERSIONS = [f"v{i:02d}" for i in range(12)]
TRACES = [f"{i:032x}" for i in range(1, 12)] + ["not-hex-trace"]


@st.composite
def buckets(draw: st.DrawFn) -> Bucket:
    """A bucket with any contents, set through its public API."""
    bucket = Bucket()
    for name in draw(st.lists(st.sampled_from(COUNTERS), max_size=12)):
        setattr(bucket, name, getattr(bucket, name) + draw(st.integers(1, 10**15)))
    bucket.session_cost_max_pusd = draw(st.integers(0, 10**12))
    times = draw(st.lists(st.integers(T0, T0 + 10**12), max_size=2))
    for at in times:
        bucket.min_event_unix_ns = at if bucket.min_event_unix_ns is None \
            else min(bucket.min_event_unix_ns, at)
        bucket.max_event_unix_ns = at if bucket.max_event_unix_ns is None \
            else max(bucket.max_event_unix_ns, at)
    for counts in (bucket.finish_reasons, bucket.error_kinds, bucket.unknown_cost):
        for label in draw(st.lists(st.sampled_from(LABELS), max_size=8)):
            counts.add(label, draw(st.integers(1, 5)))
    for model in draw(st.lists(st.sampled_from(MODELS), max_size=5)):
        cost = draw(st.integers(0, 10**9))
        bucket.cost_mix.add((model, 1, draw(st.integers(0, 900)), 0, 7, cost))
    for values in (bucket.prompt_template_versions, bucket.models, bucket.app_versions):
        for version in draw(st.lists(st.sampled_from(VERSIONS), max_size=10)):
            values.add(version)
    for trace in draw(st.lists(st.sampled_from(TRACES), max_size=7)):
        bucket.exemplars.offer((draw(st.booleans()), draw(st.integers(0, 10**10)), trace))
    for trace in draw(st.lists(st.sampled_from(TRACES), max_size=3)):
        bucket.safety_failure_traces.add(trace)
    for index in draw(st.lists(st.integers(0, len(SKETCHES) - 1), max_size=4)):
        sketch = bucket.sketches[index] = bucket.sketches[index] or QuantileSketch()
        for value in draw(st.lists(st.just(0.0) | st.floats(1e-3, 1e4), max_size=30)):
            sketch.add(value)
    return bucket


def _one_by_one(blobs: list[bytes]) -> bytes:
    merged = Bucket()
    for blob in blobs:
        merged.merge_packed(blob)
    return merged.pack()


def _all_at_once(blobs: list[bytes]) -> bytes:
    merged = Bucket()
    merge_all(merged, [unpack_fields(blob) for blob in blobs])
    return merged.pack()


@settings(max_examples=300, deadline=None)
@given(st.lists(buckets(), min_size=1, max_size=12))
def test_any_buckets_merge_to_the_bytes_of_one_by_one(parts: list[Bucket]) -> None:
    blobs = [bucket.pack() for bucket in parts]
    assert _all_at_once(blobs) == _one_by_one(blobs)


@settings(max_examples=60, deadline=None)
@given(st.lists(records(min_size=1, max_size=40), min_size=2, max_size=8))
def test_buckets_of_records_merge_to_the_bytes_of_one_by_one(
        minutes: list[list[LLMSpan | EvalResult]]) -> None:
    blobs = []
    for batch in minutes:
        bucket = Bucket()
        for record in batch:
            bucket.fold(record)
        blobs.append(bucket.pack())
    assert _all_at_once(blobs) == _one_by_one(blobs)


def test_the_merge_order_of_capped_labels_is_kept() -> None:
    # Past the cap, which labels keep their own count depends on the order they came in.
    first, second = Bucket(), Bucket()
    for label in LABELS[:LABEL_LIMIT - 1]:
        first.error_kinds.add(label)
    second.error_kinds.add(LABELS[-1], 5)
    forwards = [first.pack(), second.pack()]
    backwards = forwards[::-1]
    assert _one_by_one(forwards) != _one_by_one(backwards)  # the case is order-dependent
    assert _all_at_once(forwards) == _one_by_one(forwards)
    assert _all_at_once(backwards) == _one_by_one(backwards)


def test_a_blob_of_another_state_version_is_refused() -> None:
    fields = list(unpack_fields(Bucket().pack()))
    fields[0] = 99
    with pytest.raises(ValueError, match="version 99"):
        merge_all(Bucket(), [unpack_fields(Bucket().pack()), tuple(fields)])


def test_a_truncated_version_set_stays_truncated() -> None:
    # The second blob adds nothing new: the merge is truncated only through the first's flag.
    first, second = Bucket(), Bucket()
    for version in VERSIONS[:9]:
        first.models.add(version)
    second.models.add(VERSIONS[0])
    blobs = [first.pack(), second.pack()]
    merged = Bucket()
    merge_all(merged, [unpack_fields(blob) for blob in blobs])
    assert merged.models.is_truncated
    assert merged.pack() == _one_by_one(blobs)
