"""Every metric of the catalog against a numpy reference computed from the records."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import errors
from metrics.bucket import Bucket
from metrics.catalog import ERROR_KINDS, METRICS, MetricValue, UnknownMetricError, compute
from metrics.sketch import RELATIVE_ACCURACY
from tests.metrics.strategies import Record, records, reference_metrics

DESIGN = Path("/work/shared/DESIGN.md")
ONLY_FROM_SESSIONS_OR_LATENESS = {"cost_per_session", "cost_per_session_max", "late_records",
                                  "too_late_records"}


def _bucket(recs: list[Record]) -> Bucket:
    bucket = Bucket()
    for record in recs:
        bucket.fold(record)
    return bucket


def _assert_close(name: str, got: MetricValue | None, want: float | None) -> None:
    if want is None:
        assert got is None, f"{name}: expected no data, got {got}"
        return
    assert got is not None, f"{name}: expected {want}, got None"
    if "_p" in name or name in ("output_tokens_per_s", "latency_per_output_token_s"):
        # sketch percentiles: within the relative accuracy of the exact "lower" quantile
        assert abs(got.value - want) <= RELATIVE_ACCURACY * want * (1 + 1e-9) + 1e-12, name
    else:  # fixed-point sums: exact up to 1e-9 of the unit (scores) or 1e-12 USD
        assert math.isclose(got.value, want, rel_tol=1e-9, abs_tol=1e-8), (name, got, want)


@settings(max_examples=150, deadline=None)
@given(recs=records(max_size=80), minutes=st.integers(1, 60))
def test_every_metric_matches_the_numpy_reference(recs: list[Record], minutes: int) -> None:
    window = timedelta(minutes=minutes)
    bucket = _bucket(recs)
    want = reference_metrics(recs, window)
    assert set(want) | ONLY_FROM_SESSIONS_OR_LATENESS == set(METRICS)
    for name, value in want.items():
        _assert_close(name, compute(name, bucket, window), value)


@given(recs=records(max_size=40))
def test_sample_sizes_count_what_the_catalog_says(recs: list[Record]) -> None:
    bucket = _bucket(recs)
    window = timedelta(minutes=1)
    rate = compute("request_rate", bucket, window)
    assert rate is not None and rate.n == bucket.requests
    p99 = compute("latency_p99", bucket, window)
    root = bucket.sketch("latency_s")
    assert (p99 is None) == (root is None) and (p99 is None or root is None or
                                                  p99.n == root.count)
    quality = compute("quality_score", bucket, window)
    assert quality is None or quality.n == bucket.quality_n


def test_an_empty_bucket_has_zero_traffic_and_no_other_data() -> None:
    bucket = Bucket()
    window = timedelta(minutes=5)
    assert compute("request_rate", bucket, window) == MetricValue(0.0, 0)
    assert compute("request_count", bucket, window) == MetricValue(0.0, 0)
    assert compute("total_cost_usd", bucket, window) == MetricValue(0.0, 0)
    assert compute("unknown_cost_spans", bucket, window) == MetricValue(0.0, 0)
    zero_on_empty = {"request_rate", "request_count", "total_cost_usd", "unknown_cost_spans",
                     "late_records", "too_late_records"}
    for name in set(METRICS) - zero_on_empty:
        assert compute(name, bucket, window) is None, name


def test_request_rate_is_per_minute_of_the_window() -> None:
    bucket = Bucket()
    bucket.spans_llm = 30
    assert compute("request_rate", bucket, timedelta(minutes=5)) == MetricValue(6.0, 30)


def test_cost_per_session_is_the_mean_and_max_over_priced_closed_sessions() -> None:
    bucket = Bucket()
    bucket.fold_session(2 * 10**12, 3, is_early=False)
    bucket.fold_session(4 * 10**12, 1, is_early=True)
    bucket.fold_session(0, 0, is_early=False)  # unpriced: counted, not averaged as $0
    window = timedelta(hours=1)
    assert compute("cost_per_session", bucket, window) == MetricValue(3.0, 2)
    assert compute("cost_per_session_max", bucket, window) == MetricValue(4.0, 2)
    assert bucket.sessions_closed == 3 and bucket.sessions_unpriced == 1


def test_unknown_metric_names_the_closest_ones() -> None:
    with pytest.raises(UnknownMetricError, match=r"'ttft_p9' is unknown; did you mean ttft_p99"):
        compute("ttft_p9", Bucket(), timedelta(minutes=1))


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window must be positive"):
        compute("request_rate", Bucket(), timedelta(0))


def test_error_kinds_cover_every_kind_ingest_produces() -> None:
    produced = {kind for _, kind in errors._CODE_KINDS} | set(errors._TYPE_KINDS.values()) \
        | set(errors._STATUS_KINDS.values()) | {"server_error", "other"}
    assert produced <= set(ERROR_KINDS)
    assert {f"error_rate_{kind}" for kind in ERROR_KINDS} <= set(METRICS)


@pytest.mark.skipif(not DESIGN.exists(), reason="design doc not mounted")
def test_every_metric_of_the_design_table_is_in_the_catalog() -> None:
    table = re.findall(r"^\| ([a-z_ /0-9=]+?) \|", DESIGN.read_text(), re.M)
    names = {
        "request_rate": ["request_rate"], "error_rate": ["error_rate"],
        "ttft p50/p95/p99": ["ttft_p50", "ttft_p95", "ttft_p99"],
        "latency p50/p95/p99": ["latency_p50", "latency_p95", "latency_p99"],
        "output_tokens_per_s": ["output_tokens_per_s"],
        "input/output tokens p95/p99": ["input_tokens_p95", "input_tokens_p99",
                                        "output_tokens_p95", "output_tokens_p99"],
        "cost_per_request": ["cost_per_request"], "cost_per_session": ["cost_per_session"],
        "cache_hit_rate": ["cache_hit_rate"],
        "negative_feedback_rate": ["negative_feedback_rate"],
        "regeneration_rate": ["regeneration_rate"], "refusal_rate": ["refusal_rate"],
        "heuristic_pass_rate": ["heuristic_pass_rate"], "quality_score": ["quality_score"],
        "groundedness": ["groundedness"], "safety failures": ["safety_failures"],
        "finish_reason=length share": ["finish_reason_length_share"],
    }
    rows = [row for row in table if row != "metric"]
    assert set(rows) == set(names)
    for row in rows:
        assert set(names[row]) <= set(METRICS), row


def test_every_metric_has_a_description_unit_and_sample() -> None:
    for name, info in METRICS.items():
        assert info.description and info.unit and info.sample, name
