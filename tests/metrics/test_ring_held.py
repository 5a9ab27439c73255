"""`CompactRing.held`: the (start, blob) of the intervals holding data in any [start, end),
newest first, exactly as reading every interval one by one with `get` finds them."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metrics.ring as ring_module
from metrics.ring import CompactRing
from tests.metrics.test_ring import Ring

UNIT = 60


def reference(ring: Ring, start: int, end: int) -> list[tuple[int, bytes]]:
    """Every interval in [start, end) read on its own (a plain ring, one slot per interval)."""
    if ring.end_unix_ns is None:
        return []
    out = []
    low = max(start, ring.end_unix_ns - ring.size * UNIT)  # (only held intervals can hold data)
    for at in range(low + -low % UNIT, min(end, ring.end_unix_ns), UNIT):
        blob = ring.get(at)
        if blob:  # an empty blob reads as no data
            out.append((at, blob))
    return out[::-1]


blob = st.none() | st.just(b"") | st.binary(min_size=1, max_size=12)
puts = st.lists(st.tuples(st.integers(0, 60), blob), max_size=80)


def checked_ranges(items: list[tuple[int, bytes | None]], size: int,
                   ranges: list[tuple[int, int]]
                   ) -> Iterator[tuple[Ring, CompactRing, int, int]]:
    """After each put of `items` into a plain and a compact ring of `size`: both rings and each
    (start, end) to compare them over: the held span, everything, and `ranges` as (start,
    length) (unaligned bounds included). Puts older than the compact ring holds are skipped."""
    plain, compact = Ring(UNIT, size), CompactRing(UNIT, size)
    for slot, data in items:
        try:
            compact.put(slot * UNIT, data)
        except ValueError:  # older than the ring holds
            continue
        plain.put(slot * UNIT, data or None)
        assert compact.end_unix_ns is not None
        whole = (compact.end_unix_ns - size * UNIT, compact.end_unix_ns)
        for start, length in [whole, (0, 10**9), *ranges]:
            yield plain, compact, start, start + length


@settings(max_examples=300)
@given(puts, st.integers(1, 9), st.lists(st.tuples(st.integers(-5 * UNIT, 70 * UNIT),
                                                   st.integers(0, 30 * UNIT)), max_size=6))
def test_held_lists_the_intervals_holding_data_newest_first(
        items: list[tuple[int, bytes | None]], size: int, ranges: list[tuple[int, int]]) -> None:
    for plain, compact, start, end in checked_ranges(items, size, ranges):
        assert compact.held(start, end) == reference(plain, start, end)


def test_held_of_an_empty_ring_or_range_is_empty() -> None:
    ring = CompactRing(UNIT, 4)
    assert ring.held(0, 10**9) == []
    ring.put(10 * UNIT, b"x")
    assert ring.held(10 * UNIT, 10 * UNIT) == []  # empty range
    assert ring.held(11 * UNIT, 20 * UNIT) == []  # after the newest interval
    assert ring.held(0, 7 * UNIT) == []  # before the oldest held
    assert ring.held(7 * UNIT, 11 * UNIT) == [(10 * UNIT, b"x")]


def test_held_across_wraparound_and_rebased_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ring_module, "_REBASE_AT", 50)  # rebase every few puts
    rng = random.Random(11)
    plain, compact = Ring(UNIT, 7), CompactRing(UNIT, 7)
    slot = 0
    for _ in range(500):
        slot += rng.choice([1, 1, 1, 2, 9])
        data = rng.choice([None, b"", rng.randbytes(rng.randint(1, 30))])
        compact.put(slot * UNIT, data)
        plain.put(slot * UNIT, data or None)
        if rng.random() < 0.2:  # rewrite a held interval (shifts later offsets)
            back = slot - rng.randint(0, 6)
            data = rng.choice([None, b"", rng.randbytes(rng.randint(1, 30))])
            compact.put(back * UNIT, data)
            plain.put(back * UNIT, data or None)
        low = (slot - rng.randint(0, 10)) * UNIT + rng.randint(-30, 30)
        high = low + rng.randint(0, 9) * UNIT
        assert compact.held(low, high) == reference(plain, low, high)
        assert compact.held(0, 10**12) == reference(plain, 0, 10**12)
