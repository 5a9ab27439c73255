"""Series keys for the window stage: which series a record belongs to, and on which shard.

In: an `LLMSpan` or `EvalResult` and a rule's `group_by` label names. Out: a `SeriesKey` (a
canonical tuple of `(label, value)` pairs) and a shard number that is stable across processes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from ingest.span import EvalResult, LLMSpan

LABELS: tuple[str, ...] = (
    "service", "model", "operation", "provider", "prompt_template_version", "endpoint",
    "environment", "app_version", "model_version", "user_segment", "kind",
)
"""Label names a rule may use in `group_by`, in canonical key order."""

MISSING = ""
"""Value of a label the record does not carry. Such records form their own series (for example
root `request` spans have no model, so they land in `model=""` when grouping by model)."""

EVAL_KIND = "llm"
"""`kind` label of an `EvalResult`: evaluations judge model outputs, so they group with `llm`."""

SeriesKey = tuple[tuple[str, str], ...]
"""`(("service", "checkout"), ("model", "gpt-4o"))`: hashable, picklable, labels in `LABELS`
order, so `group_by = ["model", "service"]` and `["service", "model"]` give the same series."""

Record = LLMSpan | EvalResult

_SPAN_LABELS: dict[str, Callable[[LLMSpan], str | None]] = {
    "service": lambda s: s.context.service,
    "model": lambda s: s.model,
    "operation": lambda s: s.operation,
    "provider": lambda s: s.provider,
    "prompt_template_version": lambda s: s.context.prompt_template_version,
    "endpoint": lambda s: s.context.endpoint,
    "environment": lambda s: s.context.environment,
    "app_version": lambda s: s.context.app_version,
    "model_version": lambda s: s.context.model_version,
    "user_segment": lambda s: s.context.user_segment,
    "kind": lambda s: s.kind,
}
_EVAL_LABELS: dict[str, Callable[[EvalResult], str | None]] = {
    "service": lambda e: e.context.service,
    "model": lambda e: e.model,
    "operation": lambda e: None,
    "provider": lambda e: e.provider,
    "prompt_template_version": lambda e: e.context.prompt_template_version,
    "endpoint": lambda e: e.context.endpoint,
    "environment": lambda e: e.context.environment,
    "app_version": lambda e: e.context.app_version,
    "model_version": lambda e: e.context.model_version,
    "user_segment": lambda e: e.context.user_segment,
    "kind": lambda e: EVAL_KIND,
}
_ORDER = {name: index for index, name in enumerate(LABELS)}


class UnknownLabelError(ValueError):
    """A `group_by` name that is not in `LABELS`."""


@lru_cache(maxsize=256)
def canonical_group_by(group_by: tuple[str, ...]) -> tuple[str, ...]:
    """`group_by` deduplicated and in `LABELS` order.

    Raises:
        UnknownLabelError: a name is not a label; the message lists the allowed ones.
    """
    unknown = [name for name in group_by if name not in _ORDER]
    if unknown:
        raise UnknownLabelError(
            f"group_by label {unknown[0]!r} is unknown; expected one of {', '.join(LABELS)}")
    return tuple(sorted(set(group_by), key=_ORDER.__getitem__))


def label_value(record: Record, name: str) -> str:
    """The record's value of label `name`, `MISSING` when it has none."""
    if isinstance(record, LLMSpan):
        value = _SPAN_LABELS[name](record)
    else:
        value = _EVAL_LABELS[name](record)
    return MISSING if value is None else value


def label_pairs(record: Record, names: tuple[str, ...]) -> SeriesKey:
    """`(name, label_value(record, name))` for each of `names`, in order: one type check for
    them all (rule families key every new label combination of a batch this way)."""
    getters: Mapping[str, Callable[[Any], str | None]] = (
        _SPAN_LABELS if isinstance(record, LLMSpan) else _EVAL_LABELS)
    # `or`: a label value is a str or None, and the only false str is "" (MISSING itself).
    return tuple([(name, getters[name](record) or MISSING) for name in names])


def series_key(record: Record, group_by: tuple[str, ...]) -> SeriesKey:
    """The series of `record` under `group_by` (`()` is the one global series)."""
    return label_pairs(record, canonical_group_by(group_by))


def key_of(labels: Iterable[tuple[str, str]]) -> SeriesKey:
    """A `SeriesKey` from label pairs in any order (for tests, config and backfills)."""
    pairs = dict(labels)
    order = canonical_group_by(tuple(pairs))
    return tuple((name, pairs[name]) for name in order)


def shard_of(key: SeriesKey, shards: int) -> int:
    """Shard in `[0, shards)` for `key`, equal in every process and Python version.

    CRC-32 of the key's canonical JSON encoding (not `hash()`, which is salted per process).
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    encoded = json.dumps(key, ensure_ascii=False, separators=(",", ":")).encode()
    return zlib.crc32(encoded) % shards


def format_key(key: SeriesKey) -> str:
    """`service=checkout,model=gpt-4o` for logs and alert text; `(all)` for the global series."""
    return ",".join(f"{name}={value}" for name, value in key) or "(all)"
