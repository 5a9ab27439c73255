"""Bounded, exactly mergeable collections that buckets keep besides counters and sketches.

In: trace ids, versions and labels of records. Out: the worst spans (exemplars), small sets of
live versions, and capped per-label counts, each bounded however much traffic arrives, and each
giving the same result whatever order records and merges come in.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Sequence

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

    def offer_many(self, items: Sequence[Exemplar]) -> None:
        """`offer` of each item, in one sort: the kept items are always the worst item of
        each trace, the `limit` worst traces, so they can be picked from the union at once."""
        kept = self._items
        if len(kept) >= self.limit:
            floor = kept[-1]
            items = [item for item in items if item > floor]  # could not enter one by one
            if not items:
                return
        if len(items) == 1 and not kept:
            self._items = [items[0]]
            return
        if len(items) > 8 * self.limit:
            # The worst few: unless a few traces fill them, they hold the `limit` worst traces
            # (a trace missing from them has no item above any of them).
            worst = self._worst_distinct(sorted([*kept, *heapq.nlargest(3 * self.limit, items)],
                                                reverse=True))
            if len(worst) == self.limit:
                self._items = worst
                return
        self._items = self._worst_distinct(sorted([*kept, *items], reverse=True))

    def _worst_distinct(self, pool: list[Exemplar]) -> list[Exemplar]:
        """The first item of each trace in `pool` (worst first), up to `limit` of them."""
        worst: list[Exemplar] = []
        traces: set[str] = set()
        for item in pool:  # worst first: a trace's first item is its worst
            if item[2] not in traces:
                traces.add(item[2])
                worst.append(item)
                if len(worst) == self.limit:
                    break
        return worst

    def merge(self, items: Iterable[Exemplar]) -> None:
        self.offer_many(list(items))

    def restore(self, items: Sequence[Exemplar]) -> None:
        """Take over the `items` of a `WorstSpans` of the same limit (worst first, one per
        trace) as they are, into an empty one: `merge` without sorting them out again."""
        if self._items:
            raise ValueError("restore needs an empty WorstSpans")
        self._items = list(items)


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

    def update(self, values: Iterable[str | None]) -> None:
        """`add` of each value that is not empty (None or "")."""
        mine = self._values
        self._add_new({value for value in values if value and value not in mine})

    def merge(self, values: Iterable[str], is_truncated: bool) -> None:
        mine = self._values
        self._add_new({value for value in values if value not in mine})
        self.is_truncated = self.is_truncated or is_truncated

    def restore(self, values: Sequence[str], is_truncated: bool) -> None:
        """Take over the `values` of a `BoundedSet` of the same limit (sorted, at most `limit`)
        as they are, into an empty one: `merge` without sorting them out again."""
        if self._values or self.is_truncated:
            raise ValueError("restore needs an empty BoundedSet")
        self._values = list(map(sys.intern, values))
        self.is_truncated = is_truncated

    def _add_new(self, new: set[str]) -> None:
        """`add` of each of `new` (none of them kept yet) at once: the smallest of the union."""
        if len(new) == 1:
            self.add(new.pop())
        elif new:
            union = sorted([*self._values, *map(sys.intern, new)])
            if len(union) > self.limit:
                self.is_truncated = True
                del union[self.limit:]
            self._values = union


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
