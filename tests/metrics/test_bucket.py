"""Buckets: every field against the records, exact merges in any grouping, exact state."""

from __future__ import annotations

import dataclasses
import pickle
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import EvalResult, LLMSpan, TraceContext
from metrics.bucket import MINUTE_NS, NANO, PICO_USD, SKETCHES, Bucket, minute_of
from metrics.bucket_state import BucketState, pack, unpack
from metrics.evals import DEFAULT_CATEGORIES
from tests.metrics.strategies import T0, Record, records, sample_values


def _bucket(recs: list[Record]) -> Bucket:
    bucket = Bucket()
    for record in recs:
        bucket.fold(record)
    return bucket


@settings(max_examples=150, deadline=None)
@given(records(max_size=60))
def test_counters_equal_the_records(recs: list[Record]) -> None:
    b = _bucket(recs)
    sp = [r for r in recs if isinstance(r, LLMSpan)]
    calls = [s for s in sp if s.kind in ("llm", "embedding")]
    kinds = Counter(s.kind for s in sp)
    errors = Counter(s.kind for s in sp if s.is_error)
    assert (b.spans_llm, b.spans_embedding, b.spans_retrieval, b.spans_request) == (
        kinds["llm"], kinds["embedding"], kinds["retrieval"], kinds["request"])
    assert (b.errors_llm, b.errors_embedding, b.errors_retrieval, b.errors_request) == (
        errors["llm"], errors["embedding"], errors["retrieval"], errors["request"])
    assert b.eval_results == sum(isinstance(r, EvalResult) for r in recs)
    assert b.records == len(recs)
    assert dict(b.error_kinds.items) == dict(Counter(
        s.error_kind or "other" for s in calls if s.is_error))
    assert dict(b.unknown_cost.items) == dict(Counter(
        s.unknown_cost_reason for s in calls if s.cost_usd is None))
    assert dict(b.finish_reasons.items) == dict(Counter(
        reason for s in sp if s.kind == "llm" for reason in set(s.finish_reasons)))
    assert b.cost_known == sum(s.cost_usd is not None for s in calls)
    assert b.cost_sum_pusd == sum(round(s.cost_usd * PICO_USD) for s in calls
                                  if s.cost_usd is not None)
    assert b.input_tokens_sum == sum(s.input_tokens or 0 for s in calls)
    assert b.output_tokens_sum == sum(s.output_tokens or 0 for s in sp if s.kind == "llm")
    if recs:
        times = [r.end_unix_ns if isinstance(r, LLMSpan) else r.at_unix_ns for r in recs]
        assert (b.min_event_unix_ns, b.max_event_unix_ns) == (min(times), max(times))


@settings(max_examples=100, deadline=None)
@given(records(max_size=60))
def test_eval_aggregates_equal_the_evaluations(recs: list[Record]) -> None:
    b = _bucket(recs)
    cats = DEFAULT_CATEGORIES
    scores = [s for r in recs for s in (r.evals if isinstance(r, LLMSpan) else (r.score,))]
    by = {c: [s for s in scores if cats.category_of(s.name) == c]
          for c in ("quality", "groundedness", "heuristic", "safety")}
    quality = [v for v in map(cats.value_of, by["quality"]) if v is not None]
    assert b.quality_n == len(quality)
    assert b.quality_sum_nano == sum(round(v * NANO) for v in quality)
    grounded = [v for v in map(cats.value_of, by["groundedness"]) if v is not None]
    assert b.groundedness_n == len(grounded)
    heuristic = [v for v in map(cats.passed, by["heuristic"]) if v is not None]
    assert (b.heuristic_pass, b.heuristic_total) == (sum(heuristic), len(heuristic))
    safety = [v for v in map(cats.passed, by["safety"]) if v is not None]
    assert (b.safety_failures, b.safety_total) == (safety.count(False), len(safety))
    assert b.quality_n + b.groundedness_n + b.heuristic_total + b.safety_total \
        + b.evals_other == len(scores)


@given(records(max_size=60))
def test_sketches_hold_every_value(recs: list[Record]) -> None:
    b = _bucket(recs)
    for name in SKETCHES:
        values = sample_values(recs, name)  # type: ignore[arg-type]
        sketch = b.sketch(name)
        assert (sketch.count if sketch else 0) == len(values), name
        if values and sketch is not None:
            exact = float(np.quantile(values, 0.9, method="lower"))
            got = sketch.quantile(0.9)
            assert got is not None and abs(got - exact) <= 0.01 * exact * (1 + 1e-9)


@given(records(max_size=60))
def test_exemplars_and_live_versions(recs: list[Record]) -> None:
    b = _bucket(recs)
    worst: dict[str, tuple[bool, int, str]] = {}
    for s in recs:
        if isinstance(s, LLMSpan):
            item = (s.is_error, s.end_unix_ns - s.start_unix_ns, s.trace_id)
            worst[s.trace_id] = max(worst.get(s.trace_id, item), item)
    assert b.exemplars.items == tuple(sorted(worst.values(), reverse=True)[:5])
    prompts = sorted({r.context.prompt_template_version for r in recs
                      if r.context.prompt_template_version})
    assert b.prompt_template_versions.values == tuple(prompts[:8])
    assert b.prompt_template_versions.is_truncated == (len(prompts) > 8)


@settings(max_examples=150, deadline=None)
@given(records(max_size=60), st.randoms(use_true_random=False))
def test_merging_in_any_grouping_equals_one_bucket(recs: list[Record],
                                                   rnd: random.Random) -> None:
    parts = [Bucket() for _ in range(rnd.randint(1, 5))]
    for record in recs:
        rnd.choice(parts).fold(record)
    pool: list[Bucket | BucketState] = [
        p.to_state() if rnd.random() < 0.3 else
        unpack(pack(p.to_state())) if rnd.random() < 0.3 else p for p in parts]
    rnd.shuffle(pool)
    while len(pool) > 1:
        a, b = pool.pop(rnd.randrange(len(pool))), pool.pop(rnd.randrange(len(pool)))
        merged = a if isinstance(a, Bucket) else Bucket.from_state(a)
        if isinstance(b, Bucket):
            merged.merge(b)
        else:
            merged.merge_state(b)
        pool.append(merged)
    result = pool[0] if isinstance(pool[0], Bucket) else Bucket.from_state(pool[0])
    assert result.to_state() == _bucket(recs).to_state()


@given(records(max_size=40))
def test_state_round_trips_exactly(recs: list[Record]) -> None:
    bucket = _bucket(recs)
    state = bucket.to_state()
    assert Bucket.from_state(state).to_state() == state
    assert unpack(pack(state)) == state
    # pickle is how Bytewax moves and snapshots state: test exactly that
    assert pickle.loads(pickle.dumps(bucket)) == bucket  # noqa: S301
    assert pickle.loads(pickle.dumps(state)) == state  # noqa: S301


def test_state_is_plain_data() -> None:
    def plain(value: object) -> bool:
        if isinstance(value, tuple):
            return all(plain(v) for v in value)
        if dataclasses.is_dataclass(value):
            return all(plain(getattr(value, f.name)) for f in dataclasses.fields(value))
        return value is None or isinstance(value, bool | int | float | str | bytes)
    bucket = Bucket()
    for i in range(20):
        bucket.fold(_typical_span(i))
    assert plain(bucket.to_state())


def _typical_span(i: int) -> LLMSpan:
    rng = random.Random(i)
    duration = int(rng.lognormvariate(0.5, 0.6) * 1e9)
    end = T0 + i * 3 * 10**9
    return LLMSpan(
        trace_id=f"{rng.getrandbits(128):032x}", span_id=f"{i:016x}", parent_span_id="p",
        kind="llm", name="chat gpt-4o", start_unix_ns=end - duration, end_unix_ns=end,
        context=TraceContext(service="checkout", prompt_template_version="support-v7",
                             app_version="2.3.1", session_id=f"s{i % 5}"),
        request_model="gpt-4o", provider="openai",
        input_tokens=int(rng.lognormvariate(6.5, 0.9)),
        output_tokens=int(rng.lognormvariate(5, 0.8)),
        time_to_first_token_s=duration / 1e9 * rng.uniform(0.1, 0.4),
        finish_reasons=("stop",), is_cache_hit=rng.random() < 0.3, cost_usd=rng.random() / 100)


def test_typical_minute_bucket_pickles_small() -> None:
    """20 llm calls (and their root spans) in a minute: well under 2 KB pickled."""
    bucket = Bucket()
    for i in range(20):
        span = _typical_span(i)
        bucket.fold(span)
        bucket.fold(dataclasses.replace(span, kind="request", parent_span_id=None))
    assert len(pickle.dumps(bucket.to_state(), protocol=5)) < 2048
    assert len(pack(bucket.to_state())) < 1200


def test_unsupported_state_version_is_refused() -> None:
    state = dataclasses.replace(Bucket().to_state(), version=99)
    with pytest.raises(ValueError, match="BucketState version 99 is not supported"):
        Bucket.from_state(state)


def test_minute_of_is_the_minute_the_span_ended_in() -> None:
    assert minute_of(T0 + MINUTE_NS - 1) == T0
    assert minute_of(T0 + MINUTE_NS) == T0 + MINUTE_NS


def test_non_finite_cost_counts_as_unknown() -> None:
    bucket = Bucket()
    bucket.fold(dataclasses.replace(_typical_span(1), cost_usd=float("inf")))
    assert bucket.cost_known == 0 and bucket.unknown_cost.items == (("not_finite", 1),)
