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
import operator
from typing import Any, NamedTuple

from ingest.span import EvalResult, EvalScore, LLMSpan
from metrics.bounded import OTHER, BoundedSet, CappedCounts, Exemplar, WorstSpans
from metrics.bucket_state import COUNTERS, STATE_VERSION, BucketState, Fields, unpack_fields
from metrics.cost_mix import CostMix, ModelCostState
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.sketch import QuantileSketch, sketch_key

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
_N_COUNTERS = len(COUNTERS)
_counters_of = operator.attrgetter(*COUNTERS)

EXEMPLAR_LIMIT = 5
VERSION_LIMIT = 8
LABEL_LIMIT = 24


def minute_of(unix_ns: int) -> int:
    """Start (Unix ns) of the minute containing `unix_ns`."""
    return unix_ns - unix_ns % MINUTE_NS


def event_unix_ns(record: LLMSpan | EvalResult) -> int:
    """Event time a record is bucketed by: a span's end, an evaluation's time."""
    return record.end_unix_ns if isinstance(record, LLMSpan) else record.at_unix_ns


class SpanPlan(NamedTuple):
    """What folding one span changes in a bucket, computed once (`plan_of`)."""

    counters: tuple[tuple[str, int], ...]
    """Counter increments, zeros left out."""
    event_unix_ns: int
    exemplar: Exemplar
    versions: tuple[str | None, str | None, str | None]
    """prompt_template_version, model, app_version."""
    sketch_keys: tuple[tuple[int, int | None], ...]
    """(sketch index, bin key or None for a zero) per value added."""
    error_kind: str | None
    unknown_cost: str | None
    finish_reasons: tuple[str, ...]
    """Distinct, sorted."""
    scores: tuple[EvalScore, ...]
    cost_usage: ModelCostState | None = None
    """The priced call's row of the bucket's `cost_mix`."""


def plan_of(span: LLMSpan) -> SpanPlan:
    """The changes `Bucket.fold_span` makes for `span` (same rules, computed once)."""
    kind = span.kind
    is_error = span.is_error
    counters: list[tuple[str, int]] = [(_SPAN_COUNTERS.get(kind, "spans_request"), 1)]
    if is_error:
        counters.append((_ERROR_COUNTERS.get(kind, "errors_request"), 1))
    duration_ns = max(0, span.end_unix_ns - span.start_unix_ns)
    duration_s = duration_ns / 1e9
    values: list[tuple[int, float]] = []
    if span.parent_span_id is None:
        values.append((_LATENCY, duration_s))
    error_kind = unknown_cost = None
    cost_usage: ModelCostState | None = None
    finish_reasons: tuple[str, ...] = ()
    if kind in ("llm", "embedding"):
        if is_error:
            error_kind = span.error_kind or OTHER
        if span.is_cache_hit is not None:
            counters.append(("cache_known", 1))
            if span.is_cache_hit:
                counters.append(("cache_hits", 1))
        cost = span.cost_usd
        if cost is not None and math.isfinite(cost):
            cost_pusd = round(cost * PICO_USD)
            counters.append(("cost_known", 1))
            counters.append(("cost_sum_pusd", cost_pusd))
            cost_usage = (span.model or "", 1, span.input_tokens or 0,
                          span.cached_input_tokens or 0, span.output_tokens or 0, cost_pusd)
        else:
            unknown_cost = span.unknown_cost_reason or (
                "unknown" if cost is None else "not_finite")
        if span.input_tokens is not None:
            counters.append(("input_tokens_known", 1))
            counters.append(("input_tokens_sum", span.input_tokens))
            values.append((_INPUT_TOKENS, span.input_tokens))
        if kind == "llm":
            _plan_llm(span, duration_s, counters, values)
            if span.finish_reasons:
                finish_reasons = tuple(sorted(set(span.finish_reasons)))
    elif kind == "retrieval":
        values.append((_RETRIEVAL_LATENCY, duration_s))
    if span.feedback is not None:
        counters.append(("feedback_known", 1))
        if span.feedback == "negative":
            counters.append(("feedback_negative", 1))
    if span.is_regenerated is not None:
        counters.append(("regen_known", 1))
        if span.is_regenerated:
            counters.append(("regenerated", 1))
    keys = tuple((index, sketch_key(value)) for index, value in values
                 if math.isfinite(value))
    context = span.context
    return SpanPlan(tuple((n, d) for n, d in counters if d), span.end_unix_ns,
                    (is_error, duration_ns, span.trace_id),
                    (context.prompt_template_version, span.model, context.app_version),
                    keys, error_kind, unknown_cost, finish_reasons, span.evals, cost_usage)


def _plan_llm(span: LLMSpan, duration_s: float, counters: list[tuple[str, int]],
              values: list[tuple[int, float]]) -> None:
    if span.is_refusal:
        counters.append(("refusals", 1))
    if span.finish_reasons:
        counters.append(("finish_known", 1))
        if "length" in span.finish_reasons:
            counters.append(("finish_length", 1))
    values.append((_LLM_LATENCY, duration_s))
    ttft = span.time_to_first_token_s
    if ttft is not None:
        values.append((_TTFT, ttft))
    output = span.output_tokens
    if output is None:
        return
    counters.append(("output_tokens_known", 1))
    counters.append(("output_tokens_sum", output))
    values.append((_OUTPUT_TOKENS, output))
    if output > 0 and not span.is_error:
        generating_s = duration_s - ttft if ttft is not None and ttft < duration_s \
            else duration_s
        if generating_s > 0:
            values.append((_OUTPUT_TOKENS_PER_S, output / generating_s))
        values.append((_LATENCY_PER_OUTPUT_TOKEN, duration_s / output))


_SPAN_COUNTERS = {"llm": "spans_llm", "embedding": "spans_embedding",
                  "retrieval": "spans_retrieval", "request": "spans_request"}
_ERROR_COUNTERS = {"llm": "errors_llm", "embedding": "errors_embedding",
                   "retrieval": "errors_retrieval", "request": "errors_request"}
_TTFT, _LATENCY, _LLM_LATENCY, _OUTPUT_TOKENS_PER_S, _LATENCY_PER_OUTPUT_TOKEN, \
    _INPUT_TOKENS, _OUTPUT_TOKENS, _RETRIEVAL_LATENCY = range(len(SKETCHES))


class Bucket:
    """Aggregate of one series' records over an interval; see the module docstring.

    Counters are public attributes named as in `COUNTERS`; derived totals are properties.
    `fold` and `merge` mutate; everything else reads.
    """

    __slots__ = (*COUNTERS, "_error_kinds", "_safety_failure_traces", "_unknown_cost",
                 "app_versions", "cost_mix", "exemplars", "finish_reasons", "max_event_unix_ns",
                 "min_event_unix_ns", "models", "prompt_template_versions",
                 "session_cost_max_pusd", "sketches")

    def __init__(self) -> None:
        # One chained assignment of every counter in `COUNTERS` (a loop of setattr is ~10x
        # slower, and a bucket is made per series and minute).
        self.spans_llm = self.spans_embedding = self.spans_retrieval = self.spans_request = \
            self.errors_llm = self.errors_embedding = self.errors_retrieval = \
            self.errors_request = self.eval_results = self.refusals = self.cache_known = \
            self.cache_hits = self.feedback_known = self.feedback_negative = self.regen_known = \
            self.regenerated = self.finish_known = self.finish_length = self.cost_known = \
            self.cost_sum_pusd = self.input_tokens_known = self.input_tokens_sum = \
            self.output_tokens_known = self.output_tokens_sum = self.quality_n = \
            self.quality_sum_nano = self.groundedness_n = self.groundedness_sum_nano = \
            self.heuristic_pass = self.heuristic_total = self.safety_failures = \
            self.safety_total = self.evals_other = self.sessions_closed = self.sessions_unpriced = \
            self.sessions_closed_early = self.session_cost_sum_pusd = self.late_folded = \
            self.too_late = 0
        self.session_cost_max_pusd = 0
        self.min_event_unix_ns: int | None = None
        self.max_event_unix_ns: int | None = None
        # Created on first use (properties below): most minutes have no error, no unknown
        # cost and no safety failure, and open buckets are a series' largest live objects.
        self._error_kinds: CappedCounts | None = None
        self._unknown_cost: CappedCounts | None = None
        self._safety_failure_traces: BoundedSet | None = None
        self.finish_reasons = CappedCounts(LABEL_LIMIT)
        self.sketches: list[QuantileSketch | None] = [None] * len(SKETCHES)
        self.exemplars = WorstSpans(EXEMPLAR_LIMIT)
        self.prompt_template_versions = BoundedSet(VERSION_LIMIT)
        self.models = BoundedSet(VERSION_LIMIT)
        self.app_versions = BoundedSet(VERSION_LIMIT)
        self.cost_mix = CostMix()

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

    # --- containers created on first use ---

    @property
    def error_kinds(self) -> CappedCounts:
        """Failed model calls per error kind."""
        if self._error_kinds is None:
            self._error_kinds = CappedCounts(LABEL_LIMIT)
        return self._error_kinds

    @property
    def unknown_cost(self) -> CappedCounts:
        """Model calls without a known cost, per reason."""
        if self._unknown_cost is None:
            self._unknown_cost = CappedCounts(LABEL_LIMIT)
        return self._unknown_cost

    @property
    def safety_failure_traces(self) -> BoundedSet:
        """Traces of failed safety evaluations (the smallest ids, bounded)."""
        if self._safety_failure_traces is None:
            self._safety_failure_traces = BoundedSet(EXEMPLAR_LIMIT)
        return self._safety_failure_traces

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
        self.fold_plan(plan_of(span), categories)

    def fold_plan(self, plan: SpanPlan, categories: EvalCategories = DEFAULT_CATEGORIES) -> None:
        """Add one span given as its `plan_of` (computed once when a span goes to many
        buckets: pre-aggregation folds each span into every rule family's series)."""
        for name, delta in plan.counters:
            setattr(self, name, getattr(self, name) + delta)
        at = plan.event_unix_ns
        if self.min_event_unix_ns is None or at < self.min_event_unix_ns:
            self.min_event_unix_ns = at
        if self.max_event_unix_ns is None or at > self.max_event_unix_ns:
            self.max_event_unix_ns = at
        self.exemplars.offer(plan.exemplar)
        prompt, model, app = plan.versions
        if prompt:
            self.prompt_template_versions.add(prompt)
        if model:
            self.models.add(model)
        if app:
            self.app_versions.add(app)
        sketches = self.sketches
        for index, key in plan.sketch_keys:
            sketch = sketches[index]
            if sketch is None:
                sketch = sketches[index] = QuantileSketch()
            sketch.add_key(key)
        if plan.error_kind is not None:
            self.error_kinds.add(plan.error_kind)
        if plan.unknown_cost is not None:
            self.unknown_cost.add(plan.unknown_cost)
        if plan.cost_usage is not None:
            self.cost_mix.add(plan.cost_usage)
        for reason in plan.finish_reasons:
            self.finish_reasons.add(reason)
        for score in plan.scores:
            self._fold_score(score, plan.exemplar[2], categories)

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

    # --- merging and state ---

    def merge(self, other: Bucket) -> None:
        """Add every record of `other` (which is left unchanged)."""
        self._merge_scalars(other)
        if other._error_kinds is not None:
            self.error_kinds.merge(other._error_kinds.items)
        self.finish_reasons.merge(other.finish_reasons.items)
        if other._unknown_cost is not None:
            self.unknown_cost.merge(other._unknown_cost.items)
        for index, sketch in enumerate(other.sketches):
            if sketch is not None:
                mine = self.sketches[index]
                if mine is None:
                    mine = self.sketches[index] = QuantileSketch()
                mine.merge(sketch)
        self.exemplars.merge(other.exemplars.items)
        if other._safety_failure_traces is not None:
            self.safety_failure_traces.merge(other._safety_failure_traces.values,
                                             other._safety_failure_traces.is_truncated)
        for mine_set, theirs in ((self.prompt_template_versions, other.prompt_template_versions),
                                 (self.models, other.models),
                                 (self.app_versions, other.app_versions)):
            mine_set.merge(theirs.values, theirs.is_truncated)
        self.cost_mix.merge(other.cost_mix.rows)

    def merge_packed(self, blob: bytes) -> None:
        """Add every record of a `pack`ed state (without building a `BucketState`)."""
        self.merge_fields(unpack_fields(blob))

    def merge_fields(self, fields: Fields) -> None:
        """Add every record of a state given as its `fields_of` tuple."""
        if fields[0] != STATE_VERSION:
            raise ValueError(f"BucketState version {fields[0]} is not supported; "
                             f"expected {STATE_VERSION}")
        for name, value in zip(COUNTERS, fields[1:_N_COUNTERS + 1], strict=True):
            if value:
                setattr(self, name, getattr(self, name) + value)
        (session_max, low, high, error_kinds, finish_reasons, unknown_cost, sketches, exemplars,
         safety, prompts, models, apps, truncated, *rest) = fields[_N_COUNTERS + 1:]
        self.session_cost_max_pusd = max(self.session_cost_max_pusd, session_max)
        if low is not None:
            self._see(low)
        if high is not None:
            self._see(high)
        if error_kinds:
            self.error_kinds.merge(error_kinds)
        if finish_reasons:
            self.finish_reasons.merge(finish_reasons)
        if unknown_cost:
            self.unknown_cost.merge(unknown_cost)
        mine = self.sketches
        for index, sketch in enumerate(sketches):
            if sketch is not None:
                target = mine[index]
                if target is None:
                    target = mine[index] = QuantileSketch()
                target.merge_parts(*sketch)
        self.exemplars.merge(exemplars)
        if safety:
            self.safety_failure_traces.merge(safety, False)
        self.prompt_template_versions.merge(prompts, truncated[0])
        self.models.merge(models, truncated[1])
        self.app_versions.merge(apps, truncated[2])
        if rest and rest[0]:  # cost_mix (fields after it, if any, are newer than this code)
            self.cost_mix.merge(rest[0])

    def merge_state(self, state: BucketState) -> None:
        """Add every record of a `BucketState` (without building a Bucket for it)."""
        if state.version != STATE_VERSION:
            raise ValueError(f"BucketState version {state.version} is not supported; "
                             f"expected {STATE_VERSION}")
        self._merge_scalars(state)
        if state.error_kinds:
            self.error_kinds.merge(state.error_kinds)
        self.finish_reasons.merge(state.finish_reasons)
        if state.unknown_cost:
            self.unknown_cost.merge(state.unknown_cost)
        for index, sketch_state in enumerate(state.sketches):
            if sketch_state is not None:
                mine = self.sketches[index]
                if mine is None:
                    mine = self.sketches[index] = QuantileSketch()
                mine.merge_state(sketch_state)
        self.exemplars.merge(state.exemplars)
        if state.safety_failure_traces:
            self.safety_failure_traces.merge(state.safety_failure_traces, False)
        truncated = state.truncated_versions
        self.prompt_template_versions.merge(state.prompt_template_versions, truncated[0])
        self.models.merge(state.models, truncated[1])
        self.app_versions.merge(state.app_versions, truncated[2])
        self.cost_mix.merge(state.cost_mix)

    def _merge_scalars(self, other: Bucket | BucketState) -> None:
        for name, value in zip(COUNTERS, _counters_of(other), strict=True):
            if value:  # most counters of a minute are zero
                setattr(self, name, getattr(self, name) + value)
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
            error_kinds=() if self._error_kinds is None else self._error_kinds.items,
            finish_reasons=self.finish_reasons.items,
            unknown_cost=() if self._unknown_cost is None else self._unknown_cost.items,
            sketches=tuple(None if s is None else s.to_state() for s in self.sketches),
            exemplars=self.exemplars.items,
            safety_failure_traces=(() if self._safety_failure_traces is None
                                   else self._safety_failure_traces.values),
            prompt_template_versions=self.prompt_template_versions.values,
            models=self.models.values,
            app_versions=self.app_versions.values,
            truncated_versions=(self.prompt_template_versions.is_truncated,
                                self.models.is_truncated, self.app_versions.is_truncated),
            cost_mix=self.cost_mix.rows,
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
