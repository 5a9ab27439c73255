"""Rule families: the distinct ways rules split records into series.

In: the rules of alerts.toml. Out: one `Family` per distinct (group_by, across, filters), which
keys records into series before windowing (filters may name labels outside `group_by`, so they
must apply to records, not to series) and tells which shard owns a series (rules with `across`
compare sub-series of one outer series, so those live on the outer series' shard).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.span import EvalResult, LLMSpan
from metrics.bucket import sketch_mask
from metrics.catalog import SESSION_METRICS, reads
from metrics.partial import SeriesNeeds
from metrics.series import (
    LABELS,
    SeriesKey,
    canonical_group_by,
    label_pairs,
    label_value,
    shard_of,
)
from rules.config import Rule, RulesConfig
from rules.silences import Matcher, matches_all

FILTER_LABEL = "~filter"
"""Pseudo-label that keeps the series of a filtered family apart from unfiltered ones."""

Record = LLMSpan | EvalResult


@dataclass(frozen=True, slots=True)
class Family:
    group_by: tuple[str, ...]
    """Canonical labels of a series, including the `across` label."""
    across: str | None
    filters: tuple[Matcher, ...]
    tag: str
    """Empty for unfiltered families, else a short hash of the filters."""

    def key_of(self, record: Record) -> SeriesKey | None:
        """The record's series in this family; None when the filters reject it."""
        if self.filters:
            labels = {name: label_value(record, name) for name in LABELS}
            if not matches_all(self.filters, labels):
                return None
        key = label_pairs(record, self.group_by)
        return (*key, (FILTER_LABEL, self.tag)) if self.tag else key

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels `key_of` reads: the series' labels and those the filters match."""
        return tuple(dict.fromkeys([*self.group_by, *(matcher.name for matcher in self.filters)]))

    def outer_key(self, key: SeriesKey) -> SeriesKey:
        """The series without its `across` label: what sub-series are compared within."""
        return tuple(pair for pair in key if pair[0] != self.across)

    def shard_of(self, key: SeriesKey, shards: int) -> int:
        return shard_of(self.outer_key(key), shards)


def family_of(rule: Rule) -> Family:
    group_by = canonical_group_by((*rule.group_by, *([rule.across] if rule.across else [])))
    filters = tuple(rule.filters)
    tag = ""
    if filters:
        text = repr(sorted((m.name, m.op, m.value) for m in filters))
        tag = hashlib.sha256(text.encode()).hexdigest()[:8]
    return Family(group_by, rule.across, filters, tag)


def families(config: RulesConfig) -> tuple[Family, ...]:
    """Every distinct family of the config's rules, in a stable order."""
    seen: dict[Family, None] = {}
    for rule in config.rules:
        seen.setdefault(family_of(rule), None)
    return tuple(seen)


def series_needs(config: RulesConfig, every: Sequence[Family]) -> tuple[SeriesNeeds, ...]:
    """Per family of `every`, what the rules of `config` on it read: session activity when a
    rule reads a session metric (`catalog.SESSION_METRICS`), the sketches rules read
    (`catalog.reads`). Pre-aggregation gives a family's series only that (`SeriesNeeds`)."""
    sessions: set[Family] = set()
    sketches: dict[Family, int] = {}
    for rule in config.rules:
        family = family_of(rule)
        if rule.metric in SESSION_METRICS:
            sessions.add(family)
        sketches[family] = sketches.get(family, 0) | sketch_mask(reads(rule.metric))
    return tuple(SeriesNeeds(family in sessions, sketches.get(family, 0)) for family in every)


def series_labels(key: SeriesKey) -> tuple[tuple[str, str], ...]:
    """A series' labels as alerts show them (without the filter pseudo-label)."""
    return tuple(pair for pair in key if pair[0] != FILTER_LABEL)
