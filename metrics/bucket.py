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
from collections.abc import Iterable, Sequence
from itertools import chain, compress, groupby
from typing import Any, NamedTuple

from ingest.span import EvalResult, EvalScore, LLMSpan
from metrics.bounded import OTHER, BoundedSet, CappedCounts, Exemplar, WorstSpans
from metrics.bucket_state import (
    COUNTERS,
    STATE_VERSION,
    BucketState,
    Fields,
    pack_fields,
    unpack_fields,
)
from metrics.cost_mix import CostMix, ModelCostState
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.sketch import QuantileSketch, count_elements, sketch_key

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


class SpanShape(NamedTuple):
    """The parts of a span's plan that many spans share (interned: `plan_of` gives equal shapes
    as one object), so folding a batch counts shapes instead of reading every plan's fields."""

    flags: tuple[str, ...]
    """Counters the span increments by one."""
    versions: tuple[str | None, str | None, str | None]
    """prompt_template_version, model, app_version."""
    error_kind: str | None
    unknown_cost: str | None
    finish_reasons: tuple[str, ...]
    """Distinct, sorted."""


class SpanPlan(NamedTuple):
    """What folding one span changes in a bucket, computed once (`plan_of`)."""

    shape: SpanShape
    event_unix_ns: int
    exemplar: Exemplar
    sums: tuple[int, int, int]
    """Added to cost_sum_pusd, input_tokens_sum and output_tokens_sum."""
    sketch_keys: tuple[tuple[int, int | None], ...]
    """(sketch index, bin key or None for a zero) per value added."""
    scores: tuple[EvalScore, ...]
    cost_usage: ModelCostState | None = None
    """The priced call's row of the bucket's `cost_mix`."""


ALL_SKETCHES = (1 << len(SKETCHES)) - 1
"""The `sketch_mask` of every sketch."""


def sketch_mask(names: Iterable[str]) -> int:
    """The sketches among `names` as a bit mask over `SKETCHES` indexes (other names are not
    sketches: counters, labels)."""
    mask = 0
    for name in names:
        if name in _SKETCH_INDEX:
            mask |= 1 << _SKETCH_INDEX[name]
    return mask


def masked_plan(plan: SpanPlan, sketches: int) -> SpanPlan:
    """`plan` with only the sketch keys of mask `sketches` (itself when it keeps them all)."""
    keys = plan.sketch_keys
    kept = tuple([pair for pair in keys if sketches >> pair[0] & 1])
    if len(kept) == len(keys):
        return plan
    # `plan._replace(sketch_keys=kept)`, built as `plan_of` builds plans (~5x faster).
    return _new_tuple(SpanPlan, (*plan[:4], kept, *plan[5:]))


def masked_plans(plans: Iterable[SpanPlan], sketches: int) -> list[SpanPlan]:
    """`masked_plan` of each of `plans`."""
    return [masked_plan(plan, sketches) for plan in plans]


FOLD_ONE_BY_ONE_MAX = 8
"""Plans `fold_plans` folds one by one (`fold_plan`, ~3 us a plan on the bench traffic): its
batch path costs ~10 us a call (transposing plans, counting shapes, a list per sketch) and
~1.5 us a plan, so it only wins for more (measured 2026-11, plans of the bench's slots: even
at 6-8, 1.1-1.3x at 10-12, 1.5x at 16-24)."""
_model_of = operator.itemgetter(0)
_SHAPES: dict[tuple[Any, ...], SpanShape] = {}
"""Interned shapes by themselves (found by a plain tuple of their fields as well)."""
_SHAPES_MAX = 10_000
_NO_SUMS = (0, 0, 0)


def _interned(shape: SpanShape) -> SpanShape:
    known = _SHAPES.get(shape)
    if known is not None:
        return known
    if len(_SHAPES) >= _SHAPES_MAX:  # high-cardinality versions: bounded, equal either way
        _SHAPES.clear()
    _SHAPES[shape] = shape
    return shape


def plan_of(  # noqa: PLR0915 - flat: see docstring
        span: LLMSpan, sketches: int = ALL_SKETCHES) -> SpanPlan:
    """The changes `Bucket.fold_span` makes for `span` (same rules, computed once).

    `sketches`: the sketches whose keys the plan carries (a `sketch_mask`): the plan equals
    `masked_plan(plan_of(span), sketches)`, without computing the other keys (pre-aggregation
    plans a span for the sketches some series reads: 6 of 8 under the shipped rules).
    Written out in one function, as it runs once per span: no helper functions of its own,
    the interned shape looked up by a plain tuple, plans built by `tuple.__new__` (together
    about 1.5x faster than with them; inlining `sketch_key` as well measured no gain)."""
    kind = span.kind
    is_error = span.is_error
    flags: list[str] = [_SPAN_COUNTERS.get(kind, "spans_request")]
    if is_error:
        flags.append(_ERROR_COUNTERS.get(kind, "errors_request"))
    duration_ns = max(0, span.end_unix_ns - span.start_unix_ns)
    duration_s = duration_ns / 1e9
    keys: list[tuple[int, int | None]] = []
    if span.parent_span_id is None and sketches & _LATENCY_BIT:
        keys.append((_LATENCY, sketch_key(duration_s)))
    error_kind = unknown_cost = None
    cost_usage: ModelCostState | None = None
    finish_reasons: tuple[str, ...] = ()
    sums = _NO_SUMS
    model = span.model
    if kind in {"llm", "embedding"}:
        if is_error:
            error_kind = span.error_kind or OTHER
        cache_hit = span.is_cache_hit
        if cache_hit is not None:
            flags.append("cache_known")
            if cache_hit:
                flags.append("cache_hits")
        cost = span.cost_usd
        cost_pusd = 0
        input_tokens = span.input_tokens
        if cost is not None and _ISFINITE(cost):
            cost_pusd = round(cost * PICO_USD)
            flags.append("cost_known")
            cost_usage = (model or "", 1, input_tokens or 0, span.cached_input_tokens or 0,
                          span.output_tokens or 0, cost_pusd)
        else:
            unknown_cost = span.unknown_cost_reason or (
                "unknown" if cost is None else "not_finite")
        if input_tokens is not None:
            flags.append("input_tokens_known")
            if sketches & _INPUT_TOKENS_BIT:
                keys.append((_INPUT_TOKENS, sketch_key(input_tokens)))
        output_tokens = 0
        if kind == "llm":
            # An llm span's own flags and keys (output tokens stay 0 when unknown).
            if span.is_refusal:
                flags.append("refusals")
            reasons = span.finish_reasons
            if reasons:
                flags.append("finish_known")
                if "length" in reasons:
                    flags.append("finish_length")
            if sketches & _LLM_LATENCY_BIT:
                keys.append((_LLM_LATENCY, sketch_key(duration_s)))
            ttft = span.time_to_first_token_s
            if ttft is not None and sketches & _TTFT_BIT and _ISFINITE(ttft):
                keys.append((_TTFT, sketch_key(ttft)))
            output = span.output_tokens
            if output is not None:
                output_tokens = output
                flags.append("output_tokens_known")
                if sketches & _OUTPUT_TOKENS_BIT:
                    keys.append((_OUTPUT_TOKENS, sketch_key(output)))
                if output > 0 and not is_error:
                    if sketches & _OUTPUT_TOKENS_PER_S_BIT:
                        generating_s = duration_s - ttft if ttft is not None \
                            and ttft < duration_s else duration_s
                        if generating_s > 0:
                            per_s = output / generating_s
                            if _ISFINITE(per_s):
                                keys.append((
                                    _OUTPUT_TOKENS_PER_S, sketch_key(per_s)))
                    if sketches & _LATENCY_PER_OUTPUT_TOKEN_BIT:
                        per_token = duration_s / output
                        keys.append((
                            _LATENCY_PER_OUTPUT_TOKEN, sketch_key(per_token)))
            if reasons:
                finish_reasons = tuple(sorted(set(reasons)))
        sums = (cost_pusd, input_tokens or 0, output_tokens)
    elif kind == "retrieval" and sketches & _RETRIEVAL_LATENCY_BIT:
        keys.append((_RETRIEVAL_LATENCY, sketch_key(duration_s)))
    feedback = span.feedback
    if feedback is not None:
        flags.append("feedback_known")
        if feedback == "negative":
            flags.append("feedback_negative")
    regenerated = span.is_regenerated
    if regenerated is not None:
        flags.append("regen_known")
        if regenerated:
            flags.append("regenerated")
    context = span.context
    # A plain tuple equals (and hashes as) the `SpanShape` of the same fields: the interned
    # shape is found without building one.
    fields = (tuple(flags), (context.prompt_template_version, model, context.app_version),
              error_kind, unknown_cost, finish_reasons)
    shape = _SHAPES.get(fields)
    if shape is None:
        shape = _interned(_new_tuple(SpanShape, fields))
    return _new_tuple(SpanPlan, (shape, span.end_unix_ns, (is_error, duration_ns, span.trace_id),
                                 sums, tuple(keys), span.evals, cost_usage))


_SPAN_COUNTERS = {"llm": "spans_llm", "embedding": "spans_embedding",
                  "retrieval": "spans_retrieval", "request": "spans_request"}
_ERROR_COUNTERS = {"llm": "errors_llm", "embedding": "errors_embedding",
                   "retrieval": "errors_retrieval", "request": "errors_request"}
_TTFT, _LATENCY, _LLM_LATENCY, _OUTPUT_TOKENS_PER_S, _LATENCY_PER_OUTPUT_TOKEN, \
    _INPUT_TOKENS, _OUTPUT_TOKENS, _RETRIEVAL_LATENCY = range(len(SKETCHES))
_TTFT_BIT, _LATENCY_BIT, _LLM_LATENCY_BIT, _OUTPUT_TOKENS_PER_S_BIT, \
    _LATENCY_PER_OUTPUT_TOKEN_BIT, _INPUT_TOKENS_BIT, _OUTPUT_TOKENS_BIT, \
    _RETRIEVAL_LATENCY_BIT = (1 << index for index in range(len(SKETCHES)))
_new_tuple = tuple.__new__
_ISFINITE = math.isfinite


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
        buckets: pre-aggregation folds each span into every rule family's series). The plan
        and its shape are unpacked at once and empty parts skipped (a received partial's few
        plans are folded here: ~15% less than reading each field by name)."""
        shape, at, exemplar, sums, sketch_keys, scores, cost_usage = plan
        flags, (prompt, model, app), error_kind, unknown_cost, finish_reasons = shape
        for name in flags:
            setattr(self, name, getattr(self, name) + 1)
        if sums is not _NO_SUMS:
            cost, input_tokens, output_tokens = sums
            if cost:
                self.cost_sum_pusd += cost
            if input_tokens:
                self.input_tokens_sum += input_tokens
            if output_tokens:
                self.output_tokens_sum += output_tokens
        low = self.min_event_unix_ns
        if low is None or at < low:
            self.min_event_unix_ns = at
        high = self.max_event_unix_ns
        if high is None or at > high:
            self.max_event_unix_ns = at
        self.exemplars.offer(exemplar)
        if prompt:
            self.prompt_template_versions.add(prompt)
        if model:
            self.models.add(model)
        if app:
            self.app_versions.add(app)
        if sketch_keys:
            sketches = self.sketches
            for index, key in sketch_keys:
                sketch = sketches[index]
                if sketch is None:
                    sketch = sketches[index] = QuantileSketch()
                sketch.add_key(key)
        if error_kind is not None:
            self.error_kinds.add(error_kind)
        if unknown_cost is not None:
            self.unknown_cost.add(unknown_cost)
        if cost_usage is not None:
            self.cost_mix.add(cost_usage)
        for reason in finish_reasons:
            self.finish_reasons.add(reason)
        for score in scores:
            self._fold_score(score, exemplar[2], categories)

    def fold_plans(self, plans: Sequence[SpanPlan],
                   categories: EvalCategories = DEFAULT_CATEGORIES,
                   sketches: int = ALL_SKETCHES) -> None:
        """Add spans given as their plans: the same state as `fold_plan` of each in turn, at a
        fraction of the cost for many (counters summed per shape, exemplars offered at once,
        versions and labels added once per distinct shape). `sketches`: the sketches to add
        to (a `sketch_mask`); the others stay as they are."""
        if len(plans) <= FOLD_ONE_BY_ONE_MAX:
            for plan in plans if sketches == ALL_SKETCHES else masked_plans(plans, sketches):
                self.fold_plan(plan, categories)
            return
        shape_col, at_col, exemplar_col, sums_col, keys_col, scores_col, usage_col = \
            zip(*plans, strict=True)
        # Plans per distinct shape, in the order shapes first appear (counted in C; equal
        # shapes are usually one interned object, and equal ones that are not count alike).
        counts: dict[SpanShape, int] = {}
        count_elements(counts, shape_col)
        totals: dict[str, int] = {}
        for shape, n in counts.items():
            for name in shape.flags:
                totals[name] = totals.get(name, 0) + n
        cost, input_tokens, output_tokens = map(sum, zip(*sums_col, strict=True))
        if cost:
            totals["cost_sum_pusd"] = cost
        if input_tokens:
            totals["input_tokens_sum"] = input_tokens
        if output_tokens:
            totals["output_tokens_sum"] = output_tokens
        for name, delta in totals.items():
            setattr(self, name, getattr(self, name) + delta)
        low, high = min(at_col), max(at_col)
        if self.min_event_unix_ns is None or low < self.min_event_unix_ns:
            self.min_event_unix_ns = low
        if self.max_event_unix_ns is None or high > self.max_event_unix_ns:
            self.max_event_unix_ns = high
        self.exemplars.offer_many(exemplar_col)
        self._add_versions(counts)
        # Labels in the order they first appear (as one by one: which labels a full
        # `CappedCounts` keeps depends on it).
        for shape, n in counts.items():
            if shape.error_kind is not None:
                self.error_kinds.add(shape.error_kind, n)
            if shape.unknown_cost is not None:
                self.unknown_cost.add(shape.unknown_cost, n)
            for reason in shape.finish_reasons:
                self.finish_reasons.add(reason, n)
        self._add_sketch_keys(keys_col, sketches)
        usages = list(filter(None, usage_col))  # a usage row is a non-empty tuple
        if len(usages) == 1:
            self.cost_mix.add(usages[0])
        elif usages:
            self._add_usages(usages)
        if any(scores_col):  # few spans carry evaluations: only theirs are visited
            for exemplar, scores in compress(zip(exemplar_col, scores_col, strict=True),
                                             scores_col):
                for score in scores:
                    self._fold_score(score, exemplar[2], categories)

    def _add_sketch_keys(self, keys_col: Iterable[Sequence[tuple[int, int | None]]],
                         sketches: int = ALL_SKETCHES) -> None:
        """Plans' sketch keys of the sketches in mask `sketches`, sorted out per sketch (in
        order) and added to each at once (`QuantileSketch.add_keys`: the same state as
        `add_key` of each in turn). One sketch's keys are picked in one comprehension; more
        are sorted out in one pass, keys of other sketches included and dropped after (as
        cheap as filtering them out first)."""
        if not sketches:
            return
        mine = self.sketches
        if sketches & (sketches - 1) == 0:  # one sketch (the usual mask of a series)
            index = sketches.bit_length() - 1
            keys = [key for at, key in chain.from_iterable(keys_col) if at == index]
            if keys:
                sketch = mine[index]
                if sketch is None:
                    sketch = mine[index] = QuantileSketch()
                sketch.add_keys(keys)
            return
        by_index: list[list[int | None]] = [[] for _ in SKETCHES]
        for index, key in chain.from_iterable(keys_col):
            by_index[index].append(key)
        for index, keys in enumerate(by_index):
            if keys and sketches >> index & 1:
                sketch = mine[index]
                if sketch is None:
                    sketch = mine[index] = QuantileSketch()
                sketch.add_keys(keys)

    def _add_versions(self, shapes: Iterable[SpanShape]) -> None:
        versions = {shape.versions for shape in shapes}
        if len(versions) == 1:  # usual (a series' spans share them): as `fold_plan` adds them
            self._versions(*versions.pop())
            return
        prompts, models, apps = zip(*versions, strict=True)
        self.prompt_template_versions.update(prompts)
        self.models.update(models)
        self.app_versions.update(apps)

    def _add_usages(self, usages: list[ModelCostState]) -> None:
        """Cost-mix rows summed per model first (`CostMix` is the same in any grouping)."""
        models = set(map(_model_of, usages))
        if len(models) == 1:  # one model (series by model): no sorting out
            _, calls, input_tokens, cached, output, cost = zip(*usages, strict=True)
            self.cost_mix.add((models.pop(), sum(calls), sum(input_tokens), sum(cached),
                               sum(output), sum(cost)))
            return
        usages.sort(key=_model_of)
        for model, group in groupby(usages, _model_of):
            rows = list(group)
            if len(rows) == 1:
                self.cost_mix.add(rows[0])
                continue
            _, calls, input_tokens, cached, output, cost = zip(*rows, strict=True)
            self.cost_mix.add((model, sum(calls), sum(input_tokens), sum(cached), sum(output),
                               sum(cost)))

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

    def merge_fields(self, fields: Fields, *, live: bool = False) -> None:
        """Add every record of a state given as its `fields_of` tuple. `live`: the state of a
        minute's partial (from another process), whose small sketch payloads are decoded into
        live bins (`QuantileSketch.merge_live_parts`); views and rollups keep them lazy."""
        self._merge_fields(fields, live=live, fresh=False)

    @classmethod
    def from_fields(cls, fields: Fields, *, live: bool = False) -> Bucket:
        """A new bucket of the state `Bucket.fields` gave (`live` as `merge_fields`): the
        same as `merge_fields` into an empty bucket, with exemplars and versions taken over
        as they are, not merged again (a partial received from another process, `flows.wire`:
        about 40% less than merging)."""
        bucket = cls()
        bucket._merge_fields(fields, live=live, fresh=True)
        return bucket

    def _merge_fields(self, fields: Fields, *, live: bool, fresh: bool) -> None:
        """`fresh`: this bucket is empty and `fields` are a bucket's (see `from_fields`)."""
        if fields[0] != STATE_VERSION:
            raise ValueError(f"BucketState version {fields[0]} is not supported; "
                             f"expected {STATE_VERSION}")
        counters = fields[1:_N_COUNTERS + 1]
        if len(counters) != _N_COUNTERS:
            raise ValueError(f"BucketState fields hold {len(counters)} counters; "
                             f"expected {_N_COUNTERS}")
        # Only the non-zero ones (most counters of a minute are zero), picked in C.
        for name, value in compress(zip(COUNTERS, counters, strict=True), counters):
            setattr(self, name, value if fresh else getattr(self, name) + value)
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
                if live:
                    target.merge_live_parts(*sketch)
                else:
                    target.merge_parts(*sketch)
        if safety:
            self.safety_failure_traces.merge(safety, False)
        if fresh:
            self.exemplars.restore(exemplars)
            self.prompt_template_versions.restore(prompts, truncated[0])
            self.models.restore(models, truncated[1])
            self.app_versions.restore(apps, truncated[2])
        else:
            self.exemplars.merge(exemplars)
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
        return BucketState(*self._field_values(
            tuple([None if s is None else s.to_state() for s in self.sketches])))

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

    # --- packing ---

    def pack(self) -> bytes:
        """`pack(self.to_state())`, the same bytes, built without the `BucketState` and
        `SketchState` objects (a closed minute is packed once and never read as a state)."""
        return pack_fields(self.fields())

    def fields(self, *, live: bool = False) -> Fields:
        """`fields_of(self.to_state())`, built directly. `live`: live sketches' bins as dicts
        (`QuantileSketch.live_fields`, for `merge_fields(..., live=True)`), not encoded."""
        if live:
            sketches = tuple([None if s is None else s.live_fields() for s in self.sketches])
        else:
            sketches = tuple([None if s is None else s.state_fields() for s in self.sketches])
        return self._field_values(sketches)

    def _field_values(self, sketches: tuple[Any, ...]) -> Fields:
        """The state's fields in `BucketState.__slots__` order, with `sketches` given."""
        prompts, models, apps = self.prompt_template_versions, self.models, self.app_versions
        return (STATE_VERSION, *_counters_of(self), self.session_cost_max_pusd,
                self.min_event_unix_ns, self.max_event_unix_ns,
                () if self._error_kinds is None else self._error_kinds.items,
                self.finish_reasons.items,
                () if self._unknown_cost is None else self._unknown_cost.items,
                sketches, self.exemplars.items,
                () if self._safety_failure_traces is None else self._safety_failure_traces.values,
                prompts.values, models.values, apps.values,
                (prompts.is_truncated, models.is_truncated, apps.is_truncated),
                self.cost_mix.rows)
