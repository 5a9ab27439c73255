"""Pre-aggregation shares work between series: a folded slot of the same records and sketches as
another is folded once and copied, and records in no series are never planned. Each partial must
still own its bucket, equal to folding its records alone."""

from __future__ import annotations

from ingest.span import EvalResult, LLMSpan, TraceContext
from metrics.bucket import Bucket
from metrics.partial import (
    PLANNED_MAX,
    KeyFunction,
    LabelKeys,
    SeriesNeeds,
    preaggregate_each,
    preaggregate_slots,
)
from metrics.series import SeriesKey, series_key
from tests.metrics.strategies import T0

S = 10**9


def _spans(n: int, service: str = "checkout", environment: str = "prod") -> list[LLMSpan]:
    context = TraceContext(service=service, environment=environment, session_id="s1")
    return [LLMSpan(trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id=None,
                    kind="llm", name="chat", start_unix_ns=T0 + i * S,
                    end_unix_ns=T0 + i * S + (1 + i % 7) * S // 10, context=context,
                    request_model="gpt-4o" if i % 2 else "claude", input_tokens=100 + i,
                    output_tokens=10 + i, time_to_first_token_s=0.05, cost_usd=0.001 * i)
            for i in range(n)]


def _by(*labels: str) -> KeyFunction:
    return lambda record: series_key(record, labels)


def _folded_alone(records: list[LLMSpan]) -> bytes:
    bucket = Bucket()
    for record in records:
        bucket.fold(record)
    return bucket.pack()


def test_slots_of_the_same_records_get_equal_buckets_of_their_own() -> None:
    records = _spans(3 * PLANNED_MAX)
    # Two key functions that put every record in one series each (as two rule families over
    # the same labels would), and one by model whose series hold fewer records each.
    functions = [_by("service"), _by("environment"), _by("model")]
    partials = preaggregate_each(records, functions)
    first = [p for index, p in partials if index == 0]
    second = [p for index, p in partials if index == 1]
    assert len(first) == len(second) == 1
    a, b = first[0].folded, second[0].folded
    assert a is not None and b is not None
    assert a is not b
    assert a.pack() == b.pack() == _folded_alone(records)
    b.fold(_spans(1, service="other")[0])  # each receiver may change its own bucket
    assert a.pack() == _folded_alone(records)


def test_the_same_records_under_other_sketches_are_folded_apart() -> None:
    records = _spans(3 * PLANNED_MAX)
    functions = [_by("service"), _by("environment")]
    keys_of = LabelKeys(functions, needs=[SeriesNeeds(sketches=1), SeriesNeeds(sketches=2)])
    buckets = [p.folded for _, p in preaggregate_slots(records, keys_of)]
    assert len(buckets) == 2
    assert all(b is not None for b in buckets)
    ttft, latency = (b.sketches if b is not None else [] for b in buckets)
    assert ttft[0] is not None and ttft[1] is None
    assert latency[0] is None and latency[1] is not None


def _prod_only(record: LLMSpan | EvalResult) -> SeriesKey | None:
    return series_key(record, ("service",)) if record.context.environment == "prod" else None


def _never(record: LLMSpan | EvalResult) -> SeriesKey | None:
    return None


def test_records_in_no_series_are_left_out() -> None:
    prod, staging = _spans(PLANNED_MAX + 3), _spans(5, environment="staging")
    records = [r for pair in zip(prod, staging, strict=False) for r in pair] + prod[5:]
    partials = preaggregate_each(records, [_prod_only, _never])
    assert [index for index, _ in partials] == [0]
    partial = partials[0][1]
    assert partial.records == len(prod)
    assert partial.bucket.pack() == _folded_alone(prod)
    assert preaggregate_each(staging, [_prod_only, _never]) == []
