"""The metric catalog: every per-series metric of DESIGN.md, by the exact name rules use.

In: a metric name, a `Bucket` (one closed minute or a merged view) and the window it covers.
Out: a `MetricValue` (value and the sample size behind it, so rules can require a minimum), or
None when the bucket holds no data for that metric (no TTFT reported, no evaluation...), never
a stand-in 0. Counts and rates of traffic itself (request_rate, request_count, total_cost_usd)
are 0 for an empty window: no traffic is data, and a drop to zero is a signal.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from metrics.bucket import NANO, PICO_USD, Bucket

ERROR_KINDS: tuple[str, ...] = (
    "auth", "bad_request", "cancelled", "connection", "content_filter",
    "context_length_exceeded", "not_found", "other", "overloaded", "permission",
    "quota_exceeded", "rate_limit", "server_error", "timeout",
)
"""Error kinds `ingest.errors.classify_error` produces; each has an `error_rate_<kind>`."""


@dataclass(frozen=True, slots=True)
class MetricValue:
    """A metric over a window and its sample size `n` (requests for rates, evaluations for
    eval scores, values in the sketch for percentiles, closed sessions for session cost)."""

    value: float
    n: int


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What a metric means, for docs and `alerts.toml` validation."""

    description: str
    unit: str
    sample: str
    """What `MetricValue.n` counts."""


class UnknownMetricError(ValueError):
    """A metric name that is not in `METRICS`."""


Compute = Callable[[Bucket, float], MetricValue | None]


def _ratio(numerator: int, denominator: int) -> MetricValue | None:
    return None if denominator == 0 else MetricValue(numerator / denominator, denominator)


def _mean(total: int, n: int, scale: int) -> MetricValue | None:
    return None if n == 0 else MetricValue(total / n / scale, n)


_READS: dict[Compute, frozenset[str]] = {}
"""Bucket parts other than counters a compute function reads (see `reads`), filled as the
table below is built, so it cannot drift from it."""


def _reading(parts: frozenset[str], compute: Compute) -> Compute:
    _READS[compute] = parts
    return compute


def _quantile(sketch_name: str, q: float) -> Compute:
    def compute(bucket: Bucket, minutes: float) -> MetricValue | None:
        sketch = bucket.sketch(sketch_name)
        value = None if sketch is None else sketch.quantile(q)
        return None if value is None or sketch is None else MetricValue(value, sketch.count)
    return _reading(frozenset({sketch_name}), compute)


def _error_rate_of(kind: str) -> Compute:
    return _reading(frozenset({"error_kinds"}),
                    lambda b, m: _ratio(b.error_kinds.get(kind), b.requests))


def _cost_per_session_max(b: Bucket, minutes: float) -> MetricValue | None:
    priced = b.sessions_closed - b.sessions_unpriced
    return None if priced == 0 else MetricValue(b.session_cost_max_pusd / PICO_USD, priced)


def _total_cost(b: Bucket, minutes: float) -> MetricValue | None:
    if b.cost_known == 0 and b.requests > 0:
        return None  # traffic, but none of it priced: the total is unknown, not 0
    return MetricValue(b.cost_sum_pusd / PICO_USD, b.cost_known)


def _safety_failures(b: Bucket, minutes: float) -> MetricValue | None:
    return None if b.safety_total == 0 else MetricValue(float(b.safety_failures), b.safety_total)


_P = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_REQ = "model calls (llm + embedding spans)"

_TABLE: dict[str, tuple[MetricInfo, Compute]] = {
    "request_rate": (MetricInfo("model calls per minute", "1/min", _REQ),
                     lambda b, m: MetricValue(b.requests / m, b.requests)),
    "request_count": (MetricInfo("model calls in the window", "count", _REQ),
                      lambda b, m: MetricValue(float(b.requests), b.requests)),
    "error_rate": (MetricInfo("share of model calls with error status", "ratio", _REQ),
                   lambda b, m: _ratio(b.request_errors, b.requests)),
    **{f"error_rate_{kind}": (
        MetricInfo(f"share of model calls that failed with error kind {kind}", "ratio", _REQ),
        _error_rate_of(kind)) for kind in ERROR_KINDS},
    **{f"ttft_{p}": (MetricInfo(f"{p} time to first token of llm calls", "s",
                                "llm calls with a known TTFT"), _quantile("ttft_s", q))
       for p, q in _P.items()},
    **{f"latency_{p}": (MetricInfo(f"{p} root-span (request) duration", "s", "root spans"),
                        _quantile("latency_s", q)) for p, q in _P.items()},
    **{f"llm_latency_{p}": (MetricInfo(f"{p} llm call duration", "s", "llm calls"),
                            _quantile("llm_latency_s", q)) for p, q in _P.items()},
    "output_tokens_per_s": (
        MetricInfo("median decode speed: output tokens / (duration - TTFT, or duration)",
                   "tokens/s", "successful llm calls with output"),
        _quantile("output_tokens_per_s", 0.5)),
    "latency_per_output_token_s": (
        MetricInfo("median call duration per output token", "s/token",
                   "successful llm calls with output"),
        _quantile("latency_per_output_token_s", 0.5)),
    **{f"input_tokens_{p}": (MetricInfo(f"{p} input tokens per model call", "tokens",
                                        "model calls with input token counts"),
                             _quantile("input_tokens", _P[p])) for p in ("p95", "p99")},
    **{f"output_tokens_{p}": (MetricInfo(f"{p} output tokens per llm call", "tokens",
                                         "llm calls with output token counts"),
                              _quantile("output_tokens", _P[p])) for p in ("p95", "p99")},
    "cost_per_request": (MetricInfo("mean cost of a priced model call", "USD",
                                    "priced model calls"),
                         lambda b, m: _mean(b.cost_sum_pusd, b.cost_known, PICO_USD)),
    "total_cost_usd": (MetricInfo("cost of the priced model calls in the window", "USD",
                                  "priced model calls"), _total_cost),
    "cost_per_session": (MetricInfo("mean total cost of the sessions that closed in the window",
                                    "USD", "closed sessions with a priced call"),
                         lambda b, m: _mean(b.session_cost_sum_pusd,
                                            b.sessions_closed - b.sessions_unpriced, PICO_USD)),
    "cost_per_session_max": (MetricInfo("largest total cost of a session closed in the window",
                                        "USD", "closed sessions with a priced call"),
                             _cost_per_session_max),
    "cache_hit_rate": (MetricInfo("share of model calls served from cache", "ratio",
                                  "model calls reporting cache hit or miss"),
                       lambda b, m: _ratio(b.cache_hits, b.cache_known)),
    "negative_feedback_rate": (MetricInfo("thumbs-down share of spans with user feedback",
                                          "ratio", "spans with feedback"),
                               lambda b, m: _ratio(b.feedback_negative, b.feedback_known)),
    "regeneration_rate": (MetricInfo("share of spans that regenerate a previous answer", "ratio",
                                     "spans reporting regenerated or not"),
                          lambda b, m: _ratio(b.regenerated, b.regen_known)),
    "refusal_rate": (MetricInfo("share of llm calls the model declined", "ratio", "llm calls"),
                     lambda b, m: _ratio(b.refusals, b.spans_llm)),
    "heuristic_pass_rate": (MetricInfo("pass share of rule-based evaluations", "ratio",
                                       "heuristic evaluations with a verdict"),
                            lambda b, m: _ratio(b.heuristic_pass, b.heuristic_total)),
    "quality_score": (MetricInfo("mean judge quality score", "score 0-1",
                                 "quality evaluations"),
                      lambda b, m: _mean(b.quality_sum_nano, b.quality_n, NANO)),
    "groundedness": (MetricInfo("mean groundedness (hallucination inverted)", "score 0-1",
                                "groundedness evaluations"),
                     lambda b, m: _mean(b.groundedness_sum_nano, b.groundedness_n, NANO)),
    "safety_failures": (MetricInfo("number of failing safety evaluations", "count",
                                   "safety evaluations with a verdict"), _safety_failures),
    "safety_failure_rate": (MetricInfo("share of safety evaluations that failed", "ratio",
                                       "safety evaluations with a verdict"),
                            lambda b, m: _ratio(b.safety_failures, b.safety_total)),
    "finish_reason_length_share": (
        MetricInfo("share of llm calls truncated at the token limit (finish_reason=length)",
                   "ratio", "llm calls reporting a finish reason"),
        lambda b, m: _ratio(b.finish_length, b.finish_known)),
    "unknown_cost_spans": (MetricInfo("model calls whose cost could not be priced", "count",
                                      _REQ),
                           _reading(frozenset({"unknown_cost"}), lambda b, m: MetricValue(
                               float(b.unknown_cost.total), b.requests))),
    **{f"retrieval_latency_{p}": (MetricInfo(f"{p} retrieval span duration", "s",
                                             "retrieval spans"),
                                  _quantile("retrieval_latency_s", q)) for p, q in _P.items()},
    "late_records": (MetricInfo("records folded in after the watermark passed them", "count",
                                "records in the window"),
                     lambda b, m: MetricValue(float(b.late_folded), b.records)),
    "too_late_records": (MetricInfo("records that arrived after their minute closed (counted "
                                    "here, not folded)", "count", "records in the window"),
                         lambda b, m: MetricValue(float(b.too_late), b.records)),
}

METRICS: dict[str, MetricInfo] = {name: info for name, (info, _) in _TABLE.items()}
"""Every metric name rules may use, with its description, unit and sample."""

SESSION_METRICS = frozenset({"cost_per_session", "cost_per_session_max"})
"""Metrics computed from closed sessions: only the series of rules on them need session
activity (pre-aggregation sends session touches to those series alone)."""


def reads(metric: str) -> frozenset[str]:
    """What `compute(metric, ...)` reads of a bucket besides its counters (and
    `session_cost_max_pusd`): sketch names (`SKETCHES`), "error_kinds" or "unknown_cost".
    Views for a metric (`ShardWindows.view_parts`) merge only those.

    Raises:
        UnknownMetricError: `metric` is not in `METRICS`.
    """
    return _READS.get(_entry(metric)[1], frozenset())


def _entry(metric: str) -> tuple[MetricInfo, Compute]:
    entry = _TABLE.get(metric)
    if entry is None:
        close = difflib.get_close_matches(metric, METRICS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownMetricError(f"metric {metric!r} is unknown{hint}")
    return entry


def metric_function(metric: str, window: timedelta) -> tuple[Compute, float]:
    """What `compute(metric, bucket, window)` does as `(function, minutes)`: `function(bucket,
    minutes)` is that value for any bucket, without looking the metric up and converting the
    window on every call (rule evaluation computes a rule's metric on every series, each
    minute).

    Raises:
        UnknownMetricError: `metric` is not in `METRICS`.
        ValueError: `window` is not positive.
    """
    entry = _entry(metric)
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    return entry[1], window / timedelta(minutes=1)


def compute(metric: str, bucket: Bucket, window: timedelta) -> MetricValue | None:
    """`metric` over `bucket`, which covers `window` (used by rates per minute).

    Raises:
        UnknownMetricError: `metric` is not in `METRICS` (the message suggests close names).
        ValueError: `window` is not positive.
    """
    entry = _entry(metric)
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    return entry[1](bucket, window / timedelta(minutes=1))
