"""Hypothesis strategies for window-stage tests: realistic LLM spans and evaluations, and a
plain numpy reference of every metric computed straight from a list of records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import numpy as np
from hypothesis import strategies as st

from ingest.span import EvalResult, EvalScore, LLMSpan, SpanKind, TraceContext
from metrics.bucket import MINUTE_NS
from metrics.catalog import ERROR_KINDS as ERROR_KINDS_ALL
from metrics.evals import DEFAULT_CATEGORIES

T0 = 1_699_920_000 * 10**9
"""2023-11-14 00:00 UTC: a day boundary, so rollups line up with the data."""

Record = LLMSpan | EvalResult

EVAL_NAMES = ("quality", "relevance", "faithfulness", "hallucination", "toxicity", "safety",
              "heuristic.json", "json_valid", "ragas.faithfulness", "custom_metric")
EVAL_LABELS = ("pass", "fail", "toxic", "safe", "true", "false", "hallucinated", "weird")
ERROR_KINDS = ("rate_limit", "timeout", "server_error", "other")
SESSIONS = ("s1", "s2", "s3")


def event_times(start_unix_ns: int, span_ns: int) -> st.SearchStrategy[int]:
    """Times in [start, start + span): a slot of 64, a sub-slot of 64, then a point inside, so
    hypothesis' bias towards small integers does not pile records at slot starts."""
    slot = max(1, span_ns // 4096)
    return st.builds(lambda a, b, c: start_unix_ns + min(span_ns - 1, (a * 64 + b) * slot + c),
                     st.integers(0, 63), st.integers(0, 63), st.integers(0, slot - 1))


def eval_scores() -> st.SearchStrategy[EvalScore]:
    return st.builds(
        EvalScore, name=st.sampled_from(EVAL_NAMES),
        score=st.none() | st.floats(0.0, 1.0),
        label=st.none() | st.sampled_from(EVAL_LABELS))


def contexts(sessions: bool = True) -> st.SearchStrategy[TraceContext]:
    return st.builds(
        TraceContext,
        service=st.sampled_from(["checkout", "search"]),
        prompt_template_version=st.none() | st.sampled_from([f"v{i}" for i in range(10)]),
        app_version=st.none() | st.sampled_from(["1.0", "1.1"]),
        session_id=st.none() | st.sampled_from(SESSIONS) if sessions else st.none(),
    )


@st.composite
def spans(draw: st.DrawFn, *, start_unix_ns: int = T0, span_ns: int = 30 * MINUTE_NS,
          sessions: bool = True) -> LLMSpan:
    kind: SpanKind = draw(st.sampled_from(["llm", "llm", "llm", "embedding", "retrieval",
                                           "request"]))
    end = draw(event_times(start_unix_ns, span_ns))
    # 0 or 10 ms..90 s, TTFT a share of it: every sketched quantity then spans < 9 decades,
    # the sketch's bin range (BIN_LIMIT); collapsing beyond it has a test of its own.
    duration_ns = draw(st.just(0) | st.integers(10_000_000, 90 * 10**9))
    ttft_share = draw(st.none() | st.floats(0.05, 0.9))
    is_model_call = kind in ("llm", "embedding")
    is_error = draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else False
    cost = draw(st.none() | st.floats(0.0, 0.5)) if is_model_call else None
    return LLMSpan(
        trace_id=f"{draw(st.integers(0, 2**32)):032x}",
        span_id=f"{draw(st.integers(0, 2**16)):016x}",
        parent_span_id=None if kind == "request" else draw(st.none() | st.just("parent")),
        kind=kind, name=kind, start_unix_ns=end - duration_ns, end_unix_ns=end,
        context=draw(contexts(sessions)),
        request_model=draw(st.none() | st.sampled_from(["gpt-4o", "claude", "gemini"])),
        input_tokens=draw(st.none() | st.integers(0, 20_000)) if is_model_call else None,
        output_tokens=draw(st.none() | st.integers(0, 4_000)) if kind == "llm" else None,
        time_to_first_token_s=(ttft_share * duration_ns / 1e9 if kind == "llm" and duration_ns
                               and ttft_share is not None else None),
        finish_reasons=(tuple(draw(st.lists(st.sampled_from(["stop", "length", "tool_calls"]),
                                            max_size=2))) if kind == "llm" else ()),
        is_error=is_error,
        error_kind=draw(st.none() | st.sampled_from(ERROR_KINDS)) if is_error else None,
        is_refusal=draw(st.booleans()) if kind == "llm" else False,
        is_cache_hit=draw(st.none() | st.booleans()) if is_model_call else None,
        feedback=draw(st.none() | st.sampled_from(["positive", "negative"])),
        is_regenerated=draw(st.none() | st.booleans()),
        evals=tuple(draw(st.lists(eval_scores(), max_size=2))) if kind == "llm" else (),
        cost_usd=cost,
        unknown_cost_reason=(draw(st.sampled_from(["no_model", "unknown_model"]))
                             if is_model_call and cost is None else None),
    )


@st.composite
def eval_results(draw: st.DrawFn, *, start_unix_ns: int = T0,
                 span_ns: int = 30 * MINUTE_NS) -> EvalResult:
    return EvalResult(
        trace_id=f"{draw(st.integers(0, 2**32)):032x}", span_id=None,
        at_unix_ns=draw(event_times(start_unix_ns, span_ns)),
        score=draw(eval_scores()), context=draw(contexts(sessions=False)),
        model=draw(st.none() | st.sampled_from(["gpt-4o", "claude"])))


def records(*, start_unix_ns: int = T0, span_ns: int = 30 * MINUTE_NS, min_size: int = 0,
            max_size: int = 60, sessions: bool = True) -> st.SearchStrategy[list[Record]]:
    one: st.SearchStrategy[Record] = (
        spans(start_unix_ns=start_unix_ns, span_ns=span_ns, sessions=sessions)
        | eval_results(start_unix_ns=start_unix_ns, span_ns=span_ns))
    return st.lists(one, min_size=min_size, max_size=max_size)


# --- the numpy reference -----------------------------------------------------------------------

Quantity = Literal["ttft_s", "latency_s", "llm_latency_s", "output_tokens_per_s",
                   "latency_per_output_token_s", "input_tokens", "output_tokens",
                   "retrieval_latency_s"]


def _duration_s(span: LLMSpan) -> float:
    return max(0, span.end_unix_ns - span.start_unix_ns) / 1e9


def sample_values(records: Sequence[Record], quantity: Quantity) -> list[float]:
    """Every per-span value of a sketched quantity, from first principles."""
    out: list[float] = []
    for r in records:
        if not isinstance(r, LLMSpan):
            continue
        d = _duration_s(r)
        llm, call = r.kind == "llm", r.kind in ("llm", "embedding")
        out_tok, ttft = r.output_tokens, r.time_to_first_token_s
        if quantity == "ttft_s" and llm and ttft is not None:
            out.append(ttft)
        elif (quantity == "latency_s" and r.parent_span_id is None) or (
                quantity == "llm_latency_s" and llm):
            out.append(d)
        elif quantity == "input_tokens" and call and r.input_tokens is not None:
            out.append(float(r.input_tokens))
        elif quantity == "output_tokens" and llm and out_tok is not None:
            out.append(float(out_tok))
        elif quantity == "retrieval_latency_s" and r.kind == "retrieval":
            out.append(d)
        elif llm and out_tok and not r.is_error:
            if quantity == "output_tokens_per_s":
                gen = d - ttft if ttft is not None and ttft < d else d
                if gen > 0:
                    out.append(out_tok / gen)
            elif quantity == "latency_per_output_token_s":
                out.append(d / out_tok)
    return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def reference_metrics(records: Sequence[Record], window: timedelta) -> dict[str, float | None]:
    """Exact metric values (percentiles as numpy "lower" quantiles) of a list of records."""
    sp = [r for r in records if isinstance(r, LLMSpan)]
    calls = [s for s in sp if s.kind in ("llm", "embedding")]
    llm = [s for s in sp if s.kind == "llm"]
    cats = DEFAULT_CATEGORIES
    scores = [(s, r.trace_id) for r in records
              for s in (r.evals if isinstance(r, LLMSpan) else (r.score,))]
    quality = [cats.value_of(s) for s, _ in scores if cats.category_of(s.name) == "quality"]
    grounded = [cats.value_of(s) for s, _ in scores
                if cats.category_of(s.name) == "groundedness"]
    heuristic = [cats.passed(s) for s, _ in scores if cats.category_of(s.name) == "heuristic"]
    safety = [cats.passed(s) for s, _ in scores if cats.category_of(s.name) == "safety"]
    quality_v = np.array([v for v in quality if v is not None])
    grounded_v = np.array([v for v in grounded if v is not None])
    heuristic_v = [v for v in heuristic if v is not None]
    safety_v = [v for v in safety if v is not None]
    priced = np.array([s.cost_usd for s in calls if s.cost_usd is not None])
    cache = [s.is_cache_hit for s in calls if s.is_cache_hit is not None]
    feedback = [s.feedback for s in sp if s.feedback is not None]
    regen = [s.is_regenerated for s in sp if s.is_regenerated is not None]
    finish = [s for s in llm if s.finish_reasons]
    minutes = window / timedelta(minutes=1)
    out: dict[str, float | None] = {
        "request_rate": len(calls) / minutes,
        "request_count": float(len(calls)),
        "error_rate": _ratio(sum(s.is_error for s in calls), len(calls)),
        "cost_per_request": float(priced.mean()) if len(priced) else None,
        "total_cost_usd": (float(priced.sum()) if len(priced) or not calls else None),
        "cache_hit_rate": _ratio(sum(cache), len(cache)),
        "negative_feedback_rate": _ratio(feedback.count("negative"), len(feedback)),
        "regeneration_rate": _ratio(sum(bool(v) for v in regen), len(regen)),
        "refusal_rate": _ratio(sum(s.is_refusal for s in llm), len(llm)),
        "heuristic_pass_rate": _ratio(sum(heuristic_v), len(heuristic_v)),
        "quality_score": float(quality_v.mean()) if len(quality_v) else None,
        "groundedness": float(grounded_v.mean()) if len(grounded_v) else None,
        "safety_failures": float(safety_v.count(False)) if safety_v else None,
        "safety_failure_rate": _ratio(safety_v.count(False), len(safety_v)),
        "finish_reason_length_share": _ratio(sum("length" in s.finish_reasons for s in finish),
                                             len(finish)),
        "unknown_cost_spans": float(sum(s.cost_usd is None for s in calls)),
    }
    for kind in ERROR_KINDS_ALL:
        out[f"error_rate_{kind}"] = _ratio(
            sum(s.is_error and (s.error_kind or "other") == kind for s in calls), len(calls))
    quantiles = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
    sketched: dict[str, tuple[Quantity, tuple[str, ...]]] = {
        "ttft": ("ttft_s", ("p50", "p95", "p99")),
        "latency": ("latency_s", ("p50", "p95", "p99")),
        "llm_latency": ("llm_latency_s", ("p50", "p95", "p99")),
        "input_tokens": ("input_tokens", ("p95", "p99")),
        "output_tokens": ("output_tokens", ("p95", "p99")),
        "retrieval_latency": ("retrieval_latency_s", ("p50", "p95", "p99")),
    }
    for prefix, (quantity, ps) in sketched.items():
        values = sample_values(records, quantity)
        for p in ps:
            out[f"{prefix}_{p}"] = (float(np.quantile(values, quantiles[p], method="lower"))
                                    if values else None)
    medians: tuple[Quantity, ...] = ("output_tokens_per_s", "latency_per_output_token_s")
    for name in medians:
        values = sample_values(records, name)
        out[name] = float(np.quantile(values, 0.5, method="lower")) if values else None
    return out
