"""`CompactRing.has_data`: whether any interval starting in [start, end) holds data, exactly
when reading them one by one finds some."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.ring import CompactRing
from tests.metrics.test_ring_held import UNIT, blob, checked_ranges, puts, reference


@settings(max_examples=300)
@given(puts, st.integers(1, 9), st.lists(st.tuples(st.integers(-5 * UNIT, 70 * UNIT),
                                                   st.integers(0, 30 * UNIT)), max_size=6))
def test_has_data_is_whether_some_interval_in_the_range_holds_data(
        items: list[tuple[int, bytes | None]], size: int, ranges: list[tuple[int, int]]) -> None:
    assert not CompactRing(UNIT, size).has_data(0, 10**9)
    for plain, compact, start, end in checked_ranges(items, size, ranges):
        assert compact.has_data(start, end) is bool(reference(plain, start, end))


@given(blob)
def test_one_interval_has_data_in_the_ranges_holding_its_start(data: bytes | None) -> None:
    ring = CompactRing(UNIT, 4)
    ring.put(10 * UNIT, data)
    held = bool(data)
    assert ring.has_data(10 * UNIT, 11 * UNIT) is held
    assert ring.has_data(10 * UNIT + 1, 11 * UNIT) is False  # starts after the interval's start
    assert ring.has_data(9 * UNIT + 1, 10 * UNIT + 1) is held
    assert ring.has_data(10 * UNIT, 10 * UNIT) is False  # empty range
    assert ring.has_data(0, 10 * UNIT) is False
