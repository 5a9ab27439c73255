"""Wire form of a step's `Batch` when Bytewax sends it to a worker in another process.

Bytewax pickles every item that crosses processes, and timely asks for each message's length
before writing it, so the item is pickled twice. Pickled as they are, the flow's records and
partials are expensive: frozen slotted dataclasses go through `dataclasses`' Python
`__getstate__`/`__setstate__` (a `fields()` call and a `setattr` per field), and a partial's
`Bucket` goes through a `BucketState` (built twice, once on each side) and its `SketchState`s.

Here a batch is encoded once into plain tuples and pickled into bytes (`encode`), which the
`Batch` keeps, so the second pickling copies bytes. The receiver (`decode`) builds the objects
straight from the tuples: records with `ingest.span`'s fast builders (one `TraceContext` per
distinct context of the batch), buckets by `Bucket.merge_fields` from the state's field tuple
(`Bucket.fields`, but with live sketches' bins as dicts, not payloads: `live=True` takes them
over), so a received partial merges and closes in plain Python as a local one does, and the
few bins of a minute's partial are neither encoded nor decoded on the way.
The objects rebuilt are equal to the ones sent; nothing but the flow's own workers reads this
form (it is never stored), so it may change with the code.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from ingest.span import (
    EvalResult,
    EvalScore,
    LLMSpan,
    TraceContext,
    build_context,
    build_llm_span,
    fast_builder,
)
from metrics.bucket import Bucket, SpanPlan, SpanShape
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.partial import Partial
from metrics.sessions import SessionTouch

Row = tuple[Any, ...]

_RAW, _RECORDS, _PARTIALS = 0, 1, 2
"""What a wire batch holds: items pickled as they are, records, or partials."""

_SPAN_FIELDS = tuple(f.name for f in fields(LLMSpan))
_SPAN_VALUES = attrgetter(*_SPAN_FIELDS)
_SPAN_CONTEXT = _SPAN_FIELDS.index("context")
_SPAN_EVALS = _SPAN_FIELDS.index("evals")
_CONTEXT_VALUES = attrgetter(*(f.name for f in fields(TraceContext)))
_EVAL_FIELDS = tuple(f.name for f in fields(EvalResult))
_EVAL_VALUES = attrgetter(*_EVAL_FIELDS)
_EVAL_SCORE = _EVAL_FIELDS.index("score")
_EVAL_CONTEXT = _EVAL_FIELDS.index("context")
_SCORE_VALUES = attrgetter(*(f.name for f in fields(EvalScore)))

_new_plan = tuple.__new__
"""`SpanPlan(...)` without the named tuple's Python `__new__` (as `plan_of` builds them)."""
_build_eval: Callable[..., EvalResult] = fast_builder(EvalResult)
_build_score: Callable[..., EvalScore] = fast_builder(EvalScore)
_build_partial: Callable[..., Partial] = fast_builder(Partial)
_build_touch: Callable[..., SessionTouch] = fast_builder(SessionTouch)
_TOUCH_VALUES = attrgetter(*(f.name for f in fields(SessionTouch)))


class _Table:
    """Distinct values of a batch by their field tuple (the spans of a trace share a context):
    each is sent and rebuilt once, and the objects rebuilt are shared, as immutable values may
    be. (Not used for session touches: they differ per series and minute, 204k distinct of
    242k on the bench traffic, and the lookups cost more than they saved.)"""

    __slots__ = ("_values", "index", "rows")

    def __init__(self, values: Callable[[Any], Row]) -> None:
        self._values = values
        self.index: dict[Row, int] = {}
        self.rows: list[Row] = []

    def of(self, value: Any) -> int:
        row = self._values(value)
        found = self.index.get(row)
        if found is None:
            found = self.index[row] = len(self.rows)
            self.rows.append(row)
        return found


def _score_row(score: EvalScore) -> Row:
    return _SCORE_VALUES(score)


def _record_row(record: LLMSpan | EvalResult, contexts: _Table) -> Row:
    """A span as its 31 field values, an evaluation as its 7 (told apart by length), with the
    context as its index in the batch's table and scores as tuples."""
    if isinstance(record, LLMSpan):
        values = list(_SPAN_VALUES(record))
        values[_SPAN_CONTEXT] = contexts.of(record.context)
        if record.evals:
            values[_SPAN_EVALS] = tuple(_score_row(score) for score in record.evals)
        return tuple(values)
    values = list(_EVAL_VALUES(record))
    values[_EVAL_SCORE] = _score_row(record.score)
    values[_EVAL_CONTEXT] = contexts.of(record.context)
    return tuple(values)


def _record_of(row: Row, contexts: list[TraceContext]) -> LLMSpan | EvalResult:
    if len(row) != len(_SPAN_FIELDS):
        return _eval_of(row, contexts)
    values = list(row)
    values[_SPAN_CONTEXT] = contexts[row[_SPAN_CONTEXT]]
    if row[_SPAN_EVALS]:
        values[_SPAN_EVALS] = tuple(_build_score(*score) for score in row[_SPAN_EVALS])
    return build_llm_span(*values)


def _eval_of(row: Row, contexts: list[TraceContext]) -> EvalResult:
    values = list(row)
    values[_EVAL_SCORE] = _build_score(*row[_EVAL_SCORE])
    values[_EVAL_CONTEXT] = contexts[row[_EVAL_CONTEXT]]
    return _build_eval(*values)


def _plan_row(plan: SpanPlan | EvalResult, shapes: dict[SpanShape, int],
              contexts: _Table) -> Row:
    """A span's plan as a tuple (its shape as an index into the batch's shapes, scores as
    tuples); an evaluation as `(None, its record row)`."""
    if type(plan) is EvalResult:
        return (None, _record_row(plan, contexts))
    if type(plan) is not SpanPlan:
        raise _UnexpectedItemError(type(plan).__name__)
    shape, event, exemplar, sums, sketch_keys, scores, cost_usage = plan
    return (shapes.setdefault(shape, len(shapes)), event, exemplar, sums, sketch_keys,
            tuple([_SCORE_VALUES(score) for score in scores]) if scores else (), cost_usage)


def _plan_of(row: Row, shapes: Sequence[SpanShape], contexts: list[TraceContext]
             ) -> SpanPlan | EvalResult:
    if row[0] is None:
        return _eval_of(row[1], contexts)
    shape, event, exemplar, sums, sketch_keys, scores, cost_usage = row
    return _new_plan(SpanPlan, (shapes[shape], event, exemplar, sums, sketch_keys,
                                tuple([_build_score(*score) for score in scores]) if scores
                                else (), cost_usage))


def _partial_row(partial: Partial, shapes: dict[SpanShape, int], contexts: _Table,
                 categories: dict[int, tuple[int, EvalCategories]]) -> Row:
    # Live sketch bins as dicts: not encoded here nor decoded on arrival (pickle copies them).
    folded = None if partial.folded is None else partial.folded.fields(live=True)
    if partial.categories is DEFAULT_CATEGORIES:
        category = -1  # the module's own object on the other side too
    else:
        category = categories.setdefault(id(partial.categories),
                                         (len(categories), partial.categories))[0]
    sessions, plans = partial.sessions, partial.plans
    return (partial.key, partial.minute_start_unix_ns, folded,
            tuple([_TOUCH_VALUES(touch) for touch in sessions]) if sessions else (),
            tuple([_plan_row(plan, shapes, contexts) for plan in plans]) if plans else (),
            category)


def _partial_of(row: Row, shapes: Sequence[SpanShape], contexts: list[TraceContext],
                categories: Sequence[EvalCategories]) -> Partial:
    key, minute, folded, sessions, plans, category = row
    # A minute's partial: its sketches stay live.
    bucket = None if folded is None else Bucket.from_fields(folded, live=True)
    return _build_partial(
        key, minute, bucket,
        tuple([_build_touch(*touch) for touch in sessions]) if sessions else (),
        tuple([_plan_of(plan, shapes, contexts) for plan in plans]) if plans else (),
        DEFAULT_CATEGORIES if category < 0 else categories[category])


def _kind(items: Sequence[Any]) -> int:
    if all(type(item) is LLMSpan or type(item) is EvalResult for item in items):
        return _RECORDS
    if all(type(item) is Partial for item in items):
        return _PARTIALS
    return _RAW


class _UnexpectedItemError(TypeError):
    """An item of a type this form does not know (the batch is sent as it is)."""


def encode(items: Sequence[Any]) -> bytes:
    """`items` (records, partials, or anything picklable) as bytes for `decode`."""
    try:
        return _encode(items, _kind(items) if items else _RAW)
    except _UnexpectedItemError:
        return _encode(items, _RAW)


def _encode(items: Sequence[Any], kind: int) -> bytes:
    contexts = _Table(_CONTEXT_VALUES)
    payload: Any
    extra: Any = ()
    if kind == _RECORDS:
        payload = [_record_row(record, contexts) for record in items]
    elif kind == _PARTIALS:
        shapes: dict[SpanShape, int] = {}
        categories: dict[int, tuple[int, EvalCategories]] = {}
        payload = [_partial_row(partial, shapes, contexts, categories) for partial in items]
        extra = (tuple(shapes),
                 tuple(c for _, c in sorted(categories.values(), key=lambda ic: ic[0])))
    else:
        payload = list(items)
    return pickle.dumps((kind, contexts.rows, payload, extra), protocol=pickle.HIGHEST_PROTOCOL)


def decode(blob: bytes) -> list[Any]:
    """The items `encode` was given (equal objects)."""
    kind, context_rows, payload, extra = pickle.loads(blob)  # noqa: S301 - our own workers
    contexts = [build_context(*row) for row in context_rows]
    if kind == _RECORDS:
        return [_record_of(row, contexts) for row in payload]
    if kind == _PARTIALS:
        shapes, categories = extra
        return [_partial_of(row, shapes, contexts, categories) for row in payload]
    return list(payload)
