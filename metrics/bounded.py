"""Bounded, exactly mergeable collections that buckets keep besides counters and sketches.

In: trace ids, versions and labels of records. Out: the worst spans (exemplars), small sets of
live versions, and capped per-label counts, each bounded however much traffic arrives, and each
giving the same result whatever order records and merges come in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

OTHER = "other"
"""Label that absorbs counts once a `CappedCounts` is full."""

Exemplar = tuple[bool, int, str]
"""`(is_error, duration_ns, trace_id)`; a larger tuple is a worse span."""


class WorstSpans:
    """Up to `limit` distinct traces with the worst spans: errors first, then the slowest.

    Ties break on the trace id, so the result does not depend on arrival or merge order.
    """

    __slots__ = ("_items", "limit")

    def __init__(self, limit: int = 5, items: Iterable[Exemplar] = ()) -> None:
        self.limit = limit
        self._items: list[Exemplar] = []
        for item in items:
            self.offer(item)

    @property
    def items(self) -> tuple[Exemplar, ...]:
        """Worst first."""
        return tuple(self._items)

    @property
    def trace_ids(self) -> tuple[str, ...]:
        return tuple(item[2] for item in self._items)

    def offer(self, item: Exemplar) -> None:
        if len(self._items) >= self.limit and item <= self._items[-1]:
            return
        for index, kept in enumerate(self._items):
            if kept[2] == item[2]:
                if item <= kept:
                    return
                del self._items[index]
                break
        self._items.append(item)
        self._items.sort(reverse=True)
        del self._items[self.limit:]

    def merge(self, items: Iterable[Exemplar]) -> None:
        for item in items:
            self.offer(item)


class BoundedSet:
    """The `limit` smallest distinct values seen, and whether there were more.

    Keeping the smallest (not the first) makes merges associative and order-free.
    """

    __slots__ = ("_values", "is_truncated", "limit")

    def __init__(self, limit: int = 8, values: Iterable[str] = (),
                 is_truncated: bool = False) -> None:
        self.limit = limit
        self._values: list[str] = []
        self.is_truncated = is_truncated
        for value in values:
            self.add(value)

    @property
    def values(self) -> tuple[str, ...]:
        """Sorted."""
        return tuple(self._values)

    def add(self, value: str) -> None:
        if value in self._values:
            return
        if len(self._values) >= self.limit and value > self._values[-1]:
            self.is_truncated = True
            return
        # Interned: the same few versions and models sit in every open bucket of every series
        # (a copy each, ~60 B, when they come from decoded spans or restored snapshots).
        self._values.append(sys.intern(value))
        self._values.sort()
        if len(self._values) > self.limit:
            self._values.pop()
            self.is_truncated = True

    def merge(self, values: Iterable[str], is_truncated: bool) -> None:
        for value in values:
            self.add(value)
        self.is_truncated = self.is_truncated or is_truncated


class CappedCounts:
    """Counts per label for up to `limit` labels; later labels count under `OTHER`.

    Which labels get their own count depends on arrival order once more than `limit - 1`
    distinct labels appear; totals are always exact. Labels here (error kinds, finish reasons,
    unknown-cost reasons) are small closed sets, so the cap is a guard, not a policy.
    """

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int = 16, items: Iterable[tuple[str, int]] = ()) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        for label, count in items:
            self.add(label, count)

    def add(self, label: str, count: int = 1) -> None:
        known = self._counts.get(label)
        if known is not None:
            self._counts[label] = known + count
            return
        if len(self._counts) >= self.limit - 1 and label != OTHER:
            label = OTHER
        self._counts[sys.intern(label)] = self._counts.get(label, 0) + count  # see BoundedSet

    def get(self, label: str) -> int:
        return self._counts.get(label, 0)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    @property
    def items(self) -> tuple[tuple[str, int], ...]:
        """Sorted by label."""
        return tuple(sorted(self._counts.items()))

    def merge(self, items: Iterable[tuple[str, int]]) -> None:
        for label, count in items:
            self.add(label, count)
