"""Window buckets: a mergeable aggregate of one series' records over an interval (normally
the event-time minute a span ended in, so a long LLM call lands where it finished).

In: `LLMSpan`s and `EvalResult`s (`fold`), other buckets (`merge`), closed sessions. Out:
counters, exact fixed-point sums, quantile sketches and exemplars that `catalog.compute` turns
into metrics; `to_state()` gives the plain-data `BucketState` (see `bucket_state`).

Sums are integers in fixed point (cost in pico-USD, eval scores in nano-units), so merging in
any grouping or order gives identical state; a mean is exact up to 1e-9 of its unit.
"""

from __future__ import annotations

import math
from typing import Any

from ingest.span import EvalResult, EvalScore, LLMSpan
from metrics.bounded import OTHER, BoundedSet, CappedCounts, WorstSpans
from metrics.bucket_state import COUNTERS, STATE_VERSION, BucketState
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.sketch import QuantileSketch

MINUTE_NS = 60_000_000_000
PICO_USD = 10**12
NANO = 10**9

SKETCHES: tuple[str, ...] = (
    "ttft_s",                      # llm spans with a known time to first token
    "latency_s",                   # root spans (a trace's request), any kind
    "llm_latency_s",               # llm spans
    "output_tokens_per_s",         # llm, ok, output > 0: output / (duration - ttft or duration)
    "latency_per_output_token_s",  # llm, ok, output > 0: duration / output tokens
    "input_tokens",                # llm and embedding spans
    "output_tokens",               # llm spans
    "retrieval_latency_s",         # retrieval spans
)
"""Quantile sketches of a bucket, by index."""

_SKETCH_INDEX = {name: index for index, name in enumerate(SKETCHES)}

EXEMPLAR_LIMIT = 5
VERSION_LIMIT = 8
LABEL_LIMIT = 24


def minute_of(unix_ns: int) -> int:
    """Start (Unix ns) of the minute containing `unix_ns`."""
    return unix_ns - unix_ns % MINUTE_NS


def event_unix_ns(record: LLMSpan | EvalResult) -> int:
    """Event time a record is bucketed by: a span's end, an evaluation's time."""
    return record.end_unix_ns if isinstance(record, LLMSpan) else record.at_unix_ns


class Bucket:
    """Aggregate of one series' records over an interval; see the module docstring.

    Counters are public attributes named as in `COUNTERS`; derived totals are properties.
    `fold` and `merge` mutate; everything else reads.
    """

    __slots__ = (*COUNTERS, "app_versions", "error_kinds", "exemplars", "finish_reasons",
                 "max_event_unix_ns", "min_event_unix_ns", "models", "prompt_template_versions",
                 "safety_failure_traces", "session_cost_max_pusd", "sketches", "unknown_cost")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.session_cost_max_pusd = 0
        self.min_event_unix_ns: int | None = None
        self.max_event_unix_ns: int | None = None
        self.error_kinds = CappedCounts(LABEL_LIMIT)
        self.finish_reasons = CappedCounts(LABEL_LIMIT)
        self.unknown_cost = CappedCounts(LABEL_LIMIT)
        self.sketches: list[QuantileSketch | None] = [None] * len(SKETCHES)
        self.exemplars = WorstSpans(EXEMPLAR_LIMIT)
        self.safety_failure_traces = BoundedSet(EXEMPLAR_LIMIT)
        self.prompt_template_versions = BoundedSet(VERSION_LIMIT)
        self.models = BoundedSet(VERSION_LIMIT)
        self.app_versions = BoundedSet(VERSION_LIMIT)

    # Counter attributes, declared for type checkers (values are set in __init__).
    spans_llm: int
    spans_embedding: int
    spans_retrieval: int
    spans_request: int
    errors_llm: int
    errors_embedding: int
    errors_retrieval: int
    errors_request: int
    eval_results: int
    refusals: int
    cache_known: int
    cache_hits: int
    feedback_known: int
    feedback_negative: int
    regen_known: int
    regenerated: int
    finish_known: int
    finish_length: int
    cost_known: int
    cost_sum_pusd: int
    input_tokens_known: int
    input_tokens_sum: int
    output_tokens_known: int
    output_tokens_sum: int
    quality_n: int
    quality_sum_nano: int
    groundedness_n: int
    groundedness_sum_nano: int
    heuristic_pass: int
    heuristic_total: int
    safety_failures: int
    safety_total: int
    evals_other: int
    sessions_closed: int
    sessions_unpriced: int
    sessions_closed_early: int
    session_cost_sum_pusd: int
    late_folded: int
    too_late: int

    # --- derived totals ---

    @property
    def requests(self) -> int:
        """Model calls: llm and embedding spans."""
        return self.spans_llm + self.spans_embedding

    @property
    def request_errors(self) -> int:
        """Model calls with error status."""
        return self.errors_llm + self.errors_embedding

    @property
    def spans(self) -> int:
        return self.spans_llm + self.spans_embedding + self.spans_retrieval + self.spans_request

    @property
    def records(self) -> int:
        """Spans and separate evaluation results folded in (too-late ones are not)."""
        return self.spans + self.eval_results

    @property
    def is_empty(self) -> bool:
        """No record, no closed session and no too-late record: a minute without traffic."""
        return self.records == 0 and self.sessions_closed == 0 and self.too_late == 0

    @property
    def cost_sum_usd(self) -> float:
        return self.cost_sum_pusd / PICO_USD

    def sketch(self, name: str) -> QuantileSketch | None:
        """The sketch `name` (one of `SKETCHES`), None when no value was added."""
        return self.sketches[_SKETCH_INDEX[name]]

    # --- folding records ---

    def fold(self, record: LLMSpan | EvalResult,
             categories: EvalCategories = DEFAULT_CATEGORIES) -> None:
        """Add one record."""
        if isinstance(record, LLMSpan):
            self.fold_span(record, categories)
        else:
            self.fold_eval(record, categories)

    def fold_span(self, span: LLMSpan, categories: EvalCategories = DEFAULT_CATEGORIES) -> None:
        kind = span.kind
        self._count_kind(kind, span.is_error)
        self._see(span.end_unix_ns)
        duration_ns = max(0, span.end_unix_ns - span.start_unix_ns)
        duration_s = duration_ns / 1e9
        self.exemplars.offer((span.is_error, duration_ns, span.trace_id))
        self._versions(span.context.prompt_template_version, span.model,
                       span.context.app_version)
        is_model_call = kind in ("llm", "embedding")
        if span.parent_span_id is None:
            self._add("latency_s", duration_s)
        if is_model_call:
            self._fold_model_call(span, duration_s)
        elif kind == "retrieval":
            self._add("retrieval_latency_s", duration_s)
        if span.feedback is not None:
            self.feedback_known += 1
            self.feedback_negative += span.feedback == "negative"
        if span.is_regenerated is not None:
            self.regen_known += 1
            self.regenerated += span.is_regenerated
        for score in span.evals:
            self._fold_score(score, span.trace_id, categories)

    def _fold_model_call(self, span: LLMSpan, duration_s: float) -> None:
        if span.is_error:
            self.error_kinds.add(span.error_kind or OTHER)
        if span.is_cache_hit is not None:
            self.cache_known += 1
            self.cache_hits += span.is_cache_hit
        if span.cost_usd is not None and math.isfinite(span.cost_usd):
            self.cost_known += 1
            self.cost_sum_pusd += round(span.cost_usd * PICO_USD)
        else:
            self.unknown_cost.add(span.unknown_cost_reason or
                                  ("unknown" if span.cost_usd is None else "not_finite"))
        if span.input_tokens is not None:
            self.input_tokens_known += 1
            self.input_tokens_sum += span.input_tokens
            self._add("input_tokens", span.input_tokens)
        if span.kind != "llm":
            return
        self.refusals += span.is_refusal
        if span.finish_reasons:
            self.finish_known += 1
            self.finish_length += "length" in span.finish_reasons
            for reason in sorted(set(span.finish_reasons)):
                self.finish_reasons.add(reason)
        self._add("llm_latency_s", duration_s)
        ttft = span.time_to_first_token_s
        if ttft is not None:
            self._add("ttft_s", ttft)
        output = span.output_tokens
        if output is None:
            return
        self.output_tokens_known += 1
        self.output_tokens_sum += output
        self._add("output_tokens", output)
        if output > 0 and not span.is_error:
            generating_s = duration_s - ttft if ttft is not None and ttft < duration_s \
                else duration_s
            if generating_s > 0:
                self._add("output_tokens_per_s", output / generating_s)
            self._add("latency_per_output_token_s", duration_s / output)

    def fold_eval(self, result: EvalResult,
                  categories: EvalCategories = DEFAULT_CATEGORIES) -> None:
        self.eval_results += 1
        self._see(result.at_unix_ns)
        self._versions(result.context.prompt_template_version, result.model,
                       result.context.app_version)
        self._fold_score(result.score, result.trace_id, categories)

    def _fold_score(self, score: EvalScore, trace_id: str, categories: EvalCategories) -> None:
        category = categories.category_of(score.name)
        if category in ("quality", "groundedness"):
            value = categories.value_of(score)
            if value is None or not math.isfinite(value):
                self.evals_other += 1
            elif category == "quality":
                self.quality_n += 1
                self.quality_sum_nano += round(value * NANO)
            else:
                self.groundedness_n += 1
                self.groundedness_sum_nano += round(value * NANO)
            return
        verdict = categories.passed(score) if category is not None else None
        if verdict is None:
            self.evals_other += 1
        elif category == "heuristic":
            self.heuristic_total += 1
            self.heuristic_pass += verdict
        else:
            self.safety_total += 1
            if not verdict:
                self.safety_failures += 1
                self.safety_failure_traces.add(trace_id)

    def fold_session(self, cost_pusd: int, priced_calls: int, *, is_early: bool) -> None:
        """Add one closed session (its total cost; unpriced sessions are only counted)."""
        self.sessions_closed += 1
        self.sessions_closed_early += is_early
        if priced_calls == 0:
            self.sessions_unpriced += 1
            return
        self.session_cost_sum_pusd += cost_pusd
        self.session_cost_max_pusd = max(self.session_cost_max_pusd, cost_pusd)

    def _count_kind(self, kind: str, is_error: bool) -> None:
        if kind == "llm":
            self.spans_llm += 1
            self.errors_llm += is_error
        elif kind == "embedding":
            self.spans_embedding += 1
            self.errors_embedding += is_error
        elif kind == "retrieval":
            self.spans_retrieval += 1
            self.errors_retrieval += is_error
        else:
            self.spans_request += 1
            self.errors_request += is_error

    def _see(self, unix_ns: int) -> None:
        if self.min_event_unix_ns is None or unix_ns < self.min_event_unix_ns:
            self.min_event_unix_ns = unix_ns
        if self.max_event_unix_ns is None or unix_ns > self.max_event_unix_ns:
            self.max_event_unix_ns = unix_ns

    def _versions(self, prompt: str | None, model: str | None, app: str | None) -> None:
        if prompt:
            self.prompt_template_versions.add(prompt)
        if model:
            self.models.add(model)
        if app:
            self.app_versions.add(app)

    def _add(self, sketch_name: str, value: float) -> None:
        index = _SKETCH_INDEX[sketch_name]
        sketch = self.sketches[index]
        if sketch is None:
            sketch = self.sketches[index] = QuantileSketch()
        sketch.add(value)

    # --- merging and state ---

    def merge(self, other: Bucket) -> None:
        """Add every record of `other` (which is left unchanged)."""
        self._merge_scalars(other)
        self.error_kinds.merge(other.error_kinds.items)
        self.finish_reasons.merge(other.finish_reasons.items)
        self.unknown_cost.merge(other.unknown_cost.items)
        for index, sketch in enumerate(other.sketches):
            if sketch is not None:
                mine = self.sketches[index]
                if mine is None:
                    mine = self.sketches[index] = QuantileSketch()
                mine.merge(sketch)
        self.exemplars.merge(other.exemplars.items)
        self.safety_failure_traces.merge(other.safety_failure_traces.values,
                                         other.safety_failure_traces.is_truncated)
        for mine_set, theirs in ((self.prompt_template_versions, other.prompt_template_versions),
                                 (self.models, other.models),
                                 (self.app_versions, other.app_versions)):
            mine_set.merge(theirs.values, theirs.is_truncated)

    def merge_state(self, state: BucketState) -> None:
        """Add every record of a `BucketState` (without building a Bucket for it)."""
        if state.version != STATE_VERSION:
            raise ValueError(f"BucketState version {state.version} is not supported; "
                             f"expected {STATE_VERSION}")
        self._merge_scalars(state)
        self.error_kinds.merge(state.error_kinds)
        self.finish_reasons.merge(state.finish_reasons)
        self.unknown_cost.merge(state.unknown_cost)
        for index, sketch_state in enumerate(state.sketches):
            if sketch_state is not None:
                mine = self.sketches[index]
                if mine is None:
                    mine = self.sketches[index] = QuantileSketch()
                mine.merge_state(sketch_state)
        self.exemplars.merge(state.exemplars)
        self.safety_failure_traces.merge(state.safety_failure_traces, False)
        truncated = state.truncated_versions
        self.prompt_template_versions.merge(state.prompt_template_versions, truncated[0])
        self.models.merge(state.models, truncated[1])
        self.app_versions.merge(state.app_versions, truncated[2])

    def _merge_scalars(self, other: Bucket | BucketState) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.session_cost_max_pusd = max(self.session_cost_max_pusd, other.session_cost_max_pusd)
        if other.min_event_unix_ns is not None:
            self._see(other.min_event_unix_ns)
        if other.max_event_unix_ns is not None:
            self._see(other.max_event_unix_ns)

    def to_state(self) -> BucketState:
        """Plain-data state; `Bucket.from_state(b.to_state())` equals `b` exactly."""
        counters: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        return BucketState(
            version=STATE_VERSION,
            **counters,
            session_cost_max_pusd=self.session_cost_max_pusd,
            min_event_unix_ns=self.min_event_unix_ns,
            max_event_unix_ns=self.max_event_unix_ns,
            error_kinds=self.error_kinds.items,
            finish_reasons=self.finish_reasons.items,
            unknown_cost=self.unknown_cost.items,
            sketches=tuple(None if s is None else s.to_state() for s in self.sketches),
            exemplars=self.exemplars.items,
            safety_failure_traces=self.safety_failure_traces.values,
            prompt_template_versions=self.prompt_template_versions.values,
            models=self.models.values,
            app_versions=self.app_versions.values,
            truncated_versions=(self.prompt_template_versions.is_truncated,
                                self.models.is_truncated, self.app_versions.is_truncated),
        )

    @classmethod
    def from_state(cls, state: BucketState) -> Bucket:
        bucket = cls()
        bucket.merge_state(state)
        return bucket

    def __reduce__(self) -> tuple[Any, tuple[BucketState]]:
        # A Bucket crossing a process boundary travels as its compact state.
        return (Bucket.from_state, (self.to_state(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bucket) and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (f"Bucket(records={self.records}, requests={self.requests}, "
                f"errors={self.request_errors}, events={self.min_event_unix_ns}.."
                f"{self.max_event_unix_ns})")
