"""Pre-aggregation for the window stage: one batch of records -> partial buckets per series and
minute, so only small aggregates cross the exchange to the shard that owns each series.

In: the records of one source batch and the `group_by` label sets rules use. Out: `Partial`s,
one per (series, minute) with the batch's bucket and session touches of that minute.

Cheap by design: each span's fold is planned once (`plan_of`) however many series it goes to,
a partial of a few records carries their plans, which the window stage folds straight into the
series' open bucket; a larger one keeps its live `Bucket` (no `to_state`): in one process the
window stage takes it over as is; across processes `Bucket.__reduce__` sends its compact state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from ingest.span import EvalResult, LLMSpan
from metrics.bucket import Bucket, SpanPlan, event_unix_ns, minute_of, plan_of
from metrics.bucket_state import BucketState
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.series import LABELS, SeriesKey, canonical_group_by, label_value, series_key
from metrics.sessions import SessionTouch, touch_of

PLANNED_MAX = 8
"""Most records a partial carries as their plans instead of a folded `Bucket`. The receiver
folds plans straight into the series' open bucket (about 5 us a record), where a bucket costs
creating it, folding and merging it into the open bucket (about 20 us plus 5 us a record)."""

Planned = SpanPlan | EvalResult
"""A record as a partial carries it: a span's `plan_of`, or the evaluation itself."""


@dataclass(frozen=True, slots=True)
class Partial:
    """The records of one batch that fall in one series and minute, aggregated: either folded
    (`folded`) or, for a few records, as their plans (`plans`) for the receiver to fold."""

    key: SeriesKey
    minute_start_unix_ns: int
    folded: Bucket | None
    """Owned by the partial's receiver, which may take it over (it is not copied)."""
    sessions: tuple[SessionTouch, ...] = ()
    plans: tuple[Planned, ...] = ()
    """The records when `folded` is None, in batch order."""
    categories: EvalCategories = DEFAULT_CATEGORIES
    """The categories `plans` are folded with (those of the pre-aggregation)."""

    @property
    def records(self) -> int:
        return self.folded.records if self.folded is not None else len(self.plans)

    @property
    def newest_unix_ns(self) -> int | None:
        """The highest event time of the records, None when there are none."""
        if self.folded is not None:
            return self.folded.max_event_unix_ns
        return max((_event_of(planned) for planned in self.plans), default=None)

    @property
    def bucket(self) -> Bucket:
        """The records folded (a new bucket on each call when they travel as plans)."""
        if self.folded is not None:
            return self.folded
        bucket = Bucket()
        fold_planned(bucket, self.plans, self.categories)
        return bucket

    @property
    def state(self) -> BucketState:
        """The bucket's plain-data state (computed on each call: not for hot paths)."""
        return self.bucket.to_state()


def _event_of(planned: Planned) -> int:
    return planned.event_unix_ns if isinstance(planned, SpanPlan) else planned.at_unix_ns


def fold_planned(bucket: Bucket, plans: Iterable[Planned],
                 categories: EvalCategories = DEFAULT_CATEGORIES) -> None:
    """Fold records given as `Planned` into `bucket`."""
    for planned in plans:
        if isinstance(planned, SpanPlan):
            bucket.fold_plan(planned, categories)
        else:
            bucket.fold_eval(planned, categories)


def preaggregate(records: Iterable[LLMSpan | EvalResult],
                 group_bys: Sequence[tuple[str, ...]], *,
                 categories: EvalCategories = DEFAULT_CATEGORIES) -> list[Partial]:
    """Fold a batch into one `Partial` per (series, minute), for every distinct `group_by`.

    A record goes to one series per group_by; identical group_bys (in any label order) count
    once. Session touches are merged per (series, minute, session id): within one minute no
    gap can reach the idle timeout (>= 1 minute), so this loses nothing.
    """
    groups = sorted({canonical_group_by(tuple(g)) for g in group_bys})
    return preaggregate_by(records, [_series_of(group) for group in groups],
                           categories=categories)


def _series_of(group: tuple[str, ...]) -> KeyFunction:
    return lambda record: series_key(record, group)


KeyFunction = Callable[[LLMSpan | EvalResult], SeriesKey | None]
"""The series a record belongs to under one way of grouping, None when it belongs to none
(e.g. a rule's filters reject it)."""


def preaggregate_by(records: Iterable[LLMSpan | EvalResult], key_functions: Sequence[KeyFunction],
                    *, categories: EvalCategories = DEFAULT_CATEGORIES) -> list[Partial]:
    """`preaggregate` with arbitrary series key functions (filtered rule families); partials
    of the same (series, minute) under several key functions are one."""
    merged: dict[tuple[SeriesKey, int], Partial] = {}
    for _, partial in preaggregate_each(records, key_functions, categories=categories):
        slot = (partial.key, partial.minute_start_unix_ns)
        old = merged.get(slot)
        if old is None:
            merged[slot] = partial
            continue
        touches = {t.session_id: t for t in old.sessions}
        for touch in partial.sessions:
            touches[touch.session_id] = _joined(touches.get(touch.session_id), touch)
        sessions = tuple(sorted(touches.values(), key=lambda t: t.session_id))
        if old.folded is None and partial.folded is None \
                and len(old.plans) + len(partial.plans) <= PLANNED_MAX:
            merged[slot] = Partial(old.key, old.minute_start_unix_ns, None, sessions,
                                   old.plans + partial.plans, categories)
            continue
        bucket = old.bucket  # a new bucket if `old` had plans: ours to change
        bucket.merge(partial.bucket)
        merged[slot] = Partial(old.key, old.minute_start_unix_ns, bucket, sessions)
    return [merged[slot] for slot in sorted(merged)]


_SPAN_LABEL_FIELDS = (
    "context.service", "request_model", "response_model", "operation", "provider",
    "context.prompt_template_version", "context.endpoint", "context.environment",
    "context.app_version", "context.model_version", "context.user_segment", "kind")
"""The span fields `LABELS` are read from (`model` is request_model or response_model), read
in one C call; only used while `LABELS` is the tuple it was written for."""
_LABELS_FOR_FIELDS = (
    "service", "model", "operation", "provider", "prompt_template_version", "endpoint",
    "environment", "app_version", "model_version", "user_segment", "kind")


class LabelKeys:
    """Every key function's series for a record, memoised by the record's label values.

    Only for key functions that read nothing but labels (`label_value`), as rule families and
    `series_key` do: then records with the same labels get the same keys, and a batch with
    thousands of spans over a few hundred series computes each series' keys once. The memo is
    bounded (cleared when full) and belongs to one set of key functions.
    """

    __slots__ = ("_evals", "_functions", "_max", "_span_fields", "_spans")

    def __init__(self, key_functions: Sequence[KeyFunction], max_entries: int = 100_000) -> None:
        self._functions = tuple(key_functions)
        self._spans: dict[tuple[object, ...], tuple[SeriesKey | None, ...]] = {}
        self._evals: dict[tuple[str, ...], tuple[SeriesKey | None, ...]] = {}
        self._max = max_entries
        self._span_fields = (attrgetter(*_SPAN_LABEL_FIELDS) if LABELS == _LABELS_FOR_FIELDS
                             else None)

    def __call__(self, record: LLMSpan | EvalResult) -> tuple[SeriesKey | None, ...]:
        memo: dict[Any, tuple[SeriesKey | None, ...]]
        if isinstance(record, LLMSpan) and self._span_fields is not None:
            memo, labels = self._spans, self._span_fields(record)
        else:
            memo = self._evals if isinstance(record, EvalResult) else self._spans
            labels = tuple([label_value(record, name) for name in LABELS])
        keys = memo.get(labels)
        if keys is None:
            if len(memo) >= self._max:
                memo.clear()
            keys = memo[labels] = tuple(key_of(record) for key_of in self._functions)
        return keys


SHARED_FOLD_MIN = 4
"""Records of one (series combination, minute) from which folding them once into a shared bucket
and merging that into each series beats folding each record into each series: a merge costs
about three folds (measured on the bench traffic: 2 -> 4 saves 9% of pre-aggregation)."""


def preaggregate_each(records: Iterable[LLMSpan | EvalResult],
                      key_functions: Sequence[KeyFunction], *,
                      categories: EvalCategories = DEFAULT_CATEGORIES,
                      keys_of: LabelKeys | None = None) -> list[tuple[int, Partial]]:
    """One `Partial` per (key function, series, minute), as `(key function index, partial)`,
    sorted by index, series and minute.

    Records with the same series under every key function (and the same minute) are folded
    once into a shared bucket that is then merged into each series' bucket: a batch with k
    such records costs k folds and one merge per key function instead of k folds per key
    function. Fewer records (`SHARED_FOLD_MIN`) are folded straight into each series' bucket.
    `keys_of` (for `key_functions`) computes a record's keys at once, memoised.
    """
    combos: dict[tuple[tuple[SeriesKey | None, ...], int], list[LLMSpan | EvalResult]] = {}
    for record in records:
        keys = (keys_of(record) if keys_of is not None
                else tuple(key_of_record(record) for key_of_record in key_functions))
        combos.setdefault((keys, minute_of(event_unix_ns(record))), []).append(record)
    # Per slot (key function, series, minute): the record lists of the combos that reach it.
    by_slot: dict[tuple[int, SeriesKey, int], list[list[Planned]]] = {}
    counts: dict[tuple[int, SeriesKey, int], int] = {}
    shared_uses: dict[int, int] = {}
    """Slots folded from a combo's list, by `id` of the list, while the list may be shared."""
    touches: dict[tuple[int, SeriesKey, int], dict[str, SessionTouch]] = {}
    for (keys, minute), members in combos.items():
        slots = [(index, key, minute) for index, key in enumerate(keys) if key is not None]
        if not slots:
            continue
        planned: list[Planned] = [plan_of(r) if isinstance(r, LLMSpan) else r for r in members]
        if len(planned) >= SHARED_FOLD_MIN and len(slots) > 1:
            shared_uses[id(planned)] = 0
        for slot in slots:
            by_slot.setdefault(slot, []).append(planned)
            counts[slot] = counts.get(slot, 0) + len(planned)
        for record in members:
            touch = touch_of(record) if isinstance(record, LLMSpan) else None
            if touch is None:
                continue
            for slot in slots:
                by_session = touches.setdefault(slot, {})
                by_session[touch.session_id] = _joined(by_session.get(touch.session_id), touch)
    folded_slots = [slot for slot, count in counts.items() if count > PLANNED_MAX]
    for slot in folded_slots:
        for planned in by_slot[slot]:
            if id(planned) in shared_uses:
                shared_uses[id(planned)] += 1
    shared: dict[int, Bucket] = {}
    out: list[tuple[int, Partial]] = []
    for slot in sorted(by_slot):
        index, key, minute = slot
        sessions = tuple(sorted(touches.get(slot, {}).values(), key=lambda t: t.session_id))
        lists = by_slot[slot]
        if counts[slot] <= PLANNED_MAX:
            plans = tuple(lists[0]) if len(lists) == 1 else tuple(p for ps in lists for p in ps)
            out.append((index, Partial(key, minute, None, sessions, plans, categories)))
            continue
        out.append((index, Partial(key, minute, _folded(lists, shared_uses, shared, categories),
                                   sessions)))
    return out


def _folded(lists: list[list[Planned]], shared_uses: dict[int, int], shared: dict[int, Bucket],
            categories: EvalCategories) -> Bucket:
    """One slot's bucket from its combos' record lists. A list shared by several folded slots
    is folded once into a common bucket, merged into each, adopted by the last."""
    bucket: Bucket | None = None
    for planned in lists:
        uses = shared_uses.get(id(planned))
        if uses is None or (uses < 2 and id(planned) not in shared):
            # This slot's alone (or its last user, the list not yet folded): fold it here.
            if bucket is None:
                bucket = Bucket()
            fold_planned(bucket, planned, categories)
            continue
        common = shared.get(id(planned))
        if common is None:
            common = shared[id(planned)] = Bucket()
            fold_planned(common, planned, categories)
        shared_uses[id(planned)] = uses - 1
        if bucket is None and uses == 1:
            bucket = common  # merged everywhere else already: adopt it
        else:
            if bucket is None:
                bucket = Bucket()
            bucket.merge(common)
    assert bucket is not None  # every slot has a record
    return bucket


def _joined(old: SessionTouch | None, new: SessionTouch) -> SessionTouch:
    if old is None:
        return new
    return SessionTouch(new.session_id, min(old.first_unix_ns, new.first_unix_ns),
                        max(old.last_unix_ns, new.last_unix_ns), old.cost_pusd + new.cost_pusd,
                        old.priced_calls + new.priced_calls, old.calls + new.calls)
