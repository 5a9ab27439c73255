"""Pre-aggregation for the window stage: one batch of records -> partial buckets per series and
minute, so only small aggregates cross the exchange to the shard that owns each series.

In: the records of one source batch and the `group_by` label sets rules use. Out: `Partial`s,
one per (series, minute) with the batch's bucket state and session touches of that minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ingest.span import EvalResult, LLMSpan
from metrics.bucket import Bucket, event_unix_ns, minute_of
from metrics.bucket_state import BucketState
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.series import SeriesKey, canonical_group_by, series_key
from metrics.sessions import SessionTouch, touch_of


@dataclass(frozen=True, slots=True)
class Partial:
    """The records of one batch that fall in one series and minute, aggregated."""

    key: SeriesKey
    minute_start_unix_ns: int
    state: BucketState
    sessions: tuple[SessionTouch, ...] = ()


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
    """`preaggregate` with arbitrary series key functions (filtered rule families)."""
    buckets: dict[tuple[SeriesKey, int], Bucket] = {}
    touches: dict[tuple[SeriesKey, int], dict[str, SessionTouch]] = {}
    for record in records:
        minute = minute_of(event_unix_ns(record))
        touch = touch_of(record) if isinstance(record, LLMSpan) else None
        for key_of_record in key_functions:
            key = key_of_record(record)
            if key is None:
                continue
            slot = (key, minute)
            bucket = buckets.get(slot)
            if bucket is None:
                bucket = buckets[slot] = Bucket()
            bucket.fold(record, categories)
            if touch is not None:
                by_session = touches.setdefault(slot, {})
                by_session[touch.session_id] = _joined(by_session.get(touch.session_id), touch)
    return [Partial(key, minute, bucket.to_state(),
                    tuple(sorted(touches.get((key, minute), {}).values(),
                                 key=lambda t: t.session_id)))
            for (key, minute), bucket in sorted(buckets.items(), key=lambda item: item[0])]


def _joined(old: SessionTouch | None, new: SessionTouch) -> SessionTouch:
    if old is None:
        return new
    return SessionTouch(new.session_id, min(old.first_unix_ns, new.first_unix_ns),
                        max(old.last_unix_ns, new.last_unix_ns), old.cost_pusd + new.cost_pusd,
                        old.priced_calls + new.priced_calls, old.calls + new.calls)
