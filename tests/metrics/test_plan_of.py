"""`plan_of` is written out flat for speed (keys inlined, shapes looked up by a plain tuple) and
can leave out the keys of sketches no series reads: it must give exactly the plan of the plain
per-rule code below, keys bit-identical to DDSketch's mapping, for any span, edge values too."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan
from metrics.bounded import OTHER
from metrics.bucket import ALL_SKETCHES, SKETCHES, SpanShape, masked_plan, plan_of
from metrics.sketch import KEY_MULTIPLIER, KEY_ZERO_AT_MOST, key_of, sketch_key
from tests.metrics.strategies import spans
from tests.metrics.test_fold_plans import crowded_spans

_COUNTERS = {"llm": "spans_llm", "embedding": "spans_embedding",
             "retrieval": "spans_retrieval", "request": "spans_request"}
_ERRORS = {"llm": "errors_llm", "embedding": "errors_embedding",
           "retrieval": "errors_retrieval", "request": "errors_request"}


def _key(value: float) -> int | None:
    """The bin `QuantileSketch.add` puts a value in, by DDSketch's own mapping."""
    return None if value <= KEY_ZERO_AT_MOST else key_of(value)


def reference_plan(span: LLMSpan) -> tuple[object, ...]:
    """The plan's fields, rule by rule (as `plan_of` was before it was written out flat)."""
    flags = [_COUNTERS[span.kind]] + ([_ERRORS[span.kind]] if span.is_error else [])
    duration_ns = max(0, span.end_unix_ns - span.start_unix_ns)
    duration_s = duration_ns / 1e9
    keys: list[tuple[str, int | None]] = []
    if span.parent_span_id is None:
        keys.append(("latency_s", _key(duration_s)))
    error_kind = unknown_cost = usage = None
    reasons: tuple[str, ...] = ()
    sums = (0, 0, 0)
    if span.kind in ("llm", "embedding"):
        error_kind = (span.error_kind or OTHER) if span.is_error else None
        if span.is_cache_hit is not None:
            flags += ["cache_known"] + (["cache_hits"] if span.is_cache_hit else [])
        cost_pusd = 0
        if span.cost_usd is not None and math.isfinite(span.cost_usd):
            cost_pusd = round(span.cost_usd * 10**12)
            flags.append("cost_known")
            usage = (span.model or "", 1, span.input_tokens or 0, span.cached_input_tokens or 0,
                     span.output_tokens or 0, cost_pusd)
        else:
            unknown_cost = span.unknown_cost_reason or (
                "unknown" if span.cost_usd is None else "not_finite")
        if span.input_tokens is not None:
            flags.append("input_tokens_known")
            keys.append(("input_tokens", _key(span.input_tokens)))
        output = 0
        if span.kind == "llm":
            output = _llm(span, duration_s, flags, keys)
            reasons = tuple(sorted(set(span.finish_reasons)))
        sums = (cost_pusd, span.input_tokens or 0, output)
    elif span.kind == "retrieval":
        keys.append(("retrieval_latency_s", _key(duration_s)))
    if span.feedback is not None:
        flags += ["feedback_known"] + (["feedback_negative"] if span.feedback == "negative"
                                       else [])
    if span.is_regenerated is not None:
        flags += ["regen_known"] + (["regenerated"] if span.is_regenerated else [])
    shape = SpanShape(tuple(flags), (span.context.prompt_template_version, span.model,
                                     span.context.app_version), error_kind, unknown_cost, reasons)
    return (shape, span.end_unix_ns, (span.is_error, duration_ns, span.trace_id), sums,
            tuple((SKETCHES.index(name), key) for name, key in keys), span.evals, usage)


def _llm(span: LLMSpan, duration_s: float, flags: list[str],
         keys: list[tuple[str, int | None]]) -> int:
    if span.is_refusal:
        flags.append("refusals")
    if span.finish_reasons:
        flags += ["finish_known"] + (["finish_length"] if "length" in span.finish_reasons
                                     else [])
    keys.append(("llm_latency_s", _key(duration_s)))
    ttft = span.time_to_first_token_s
    if ttft is not None and math.isfinite(ttft):
        keys.append(("ttft_s", _key(ttft)))
    if span.output_tokens is None:
        return 0
    output = span.output_tokens
    flags.append("output_tokens_known")
    keys.append(("output_tokens", _key(output)))
    if output > 0 and not span.is_error:
        generating_s = duration_s - ttft if ttft is not None and ttft < duration_s \
            else duration_s
        if generating_s > 0 and math.isfinite(output / generating_s):
            keys.append(("output_tokens_per_s", _key(output / generating_s)))
        keys.append(("latency_per_output_token_s", _key(duration_s / output)))
    return output


_odd_floats = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 5e-324, 1e-300,
                               1e300, 3.0])
_odd_costs = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 5e-324, 3.0])
"""(A cost past ~1e296 USD overflows pico-USD: normalisation never passes one.)"""


@st.composite
def edgy_spans(draw: st.DrawFn) -> LLMSpan:
    """Spans with values the bench never sends: NaN and infinite TTFT and cost, TTFT beyond
    the duration, an end before the start, zero and huge token counts."""
    span = draw(crowded_spans() | spans())
    return replace(
        span,
        start_unix_ns=span.start_unix_ns + draw(st.sampled_from([0, 0, 10**12])),
        time_to_first_token_s=draw(st.none() | _odd_floats | st.floats(0.0, 200.0))
        if span.kind == "llm" else None,
        cost_usd=draw(st.none() | _odd_costs | st.floats(0.0, 1.0))
        if span.kind in ("llm", "embedding") else None,
        input_tokens=draw(st.none() | st.sampled_from([0, 1, 10**30]) | st.integers(0, 10**6))
        if span.kind in ("llm", "embedding") else None,
        output_tokens=draw(st.none() | st.sampled_from([0, 1, 10**30]) | st.integers(0, 10**6))
        if span.kind == "llm" else None)


_masks = st.sampled_from([0, 1, 98, 128, 0b10111011, ALL_SKETCHES]) | st.integers(0, ALL_SKETCHES)


@settings(max_examples=200, deadline=None)
@given(edgy_spans() | spans())
def test_plan_of_is_the_plain_reference(span: LLMSpan) -> None:
    plan = plan_of(span)
    assert tuple(plan) == reference_plan(span)
    assert plan_of(span).shape is plan.shape  # interned


@settings(max_examples=150, deadline=None)
@given(edgy_spans() | spans(), _masks)
def test_plan_of_some_sketches_is_the_full_plan_without_the_other_keys(
        span: LLMSpan, sketches: int) -> None:
    full = plan_of(span)
    only = plan_of(span, sketches)
    assert only == masked_plan(full, sketches)
    assert all(sketches >> index & 1 for index, _ in only.sketch_keys)
    assert only.shape is full.shape


@settings(max_examples=500)
@given(st.floats(allow_nan=False, allow_infinity=False)
       | st.integers(-10, 10**40) | st.sampled_from([5e-324, 2.2250738585072014e-308, 1.0]))
def test_sketch_key_is_the_ddsketch_mapping_key(value: float) -> None:
    """`sketch_key` divides natural logs by a constant log(2) instead of `math.log(v, 2)`."""
    assert sketch_key(value) == _key(value)
    if value > KEY_ZERO_AT_MOST:
        assert sketch_key(value) == math.ceil(math.log(value, 2) * KEY_MULTIPLIER)
