"""Rings of packed blobs: a `CompactRing` (blobs joined in one bytes object) holds exactly what
a plain `Ring` holds, for any sequence of puts, and both restore from their snapshots."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metrics.ring as ring_module
from metrics.ring import CompactRing, Ring

UNIT = 60

puts = st.lists(st.tuples(st.integers(0, 40), st.none() | st.binary(min_size=1, max_size=20)),
                max_size=60)


def _held(ring: Ring | CompactRing) -> list[bytes | None]:
    assert ring.end_unix_ns is not None
    return [ring.get(start) for start in range(ring.end_unix_ns - 12 * UNIT, ring.end_unix_ns,
                                               UNIT)]


@settings(max_examples=300)
@given(puts, st.integers(1, 8))
def test_a_compact_ring_holds_what_a_plain_ring_holds(items: list[tuple[int, bytes | None]],
                                                      size: int) -> None:
    plain, compact = Ring(UNIT, size), CompactRing(UNIT, size)
    for slot, blob in items:
        outcomes = []
        for ring in (plain, compact):
            try:
                ring.put(slot * UNIT, blob)
                outcomes.append("ok")
            except ValueError as error:  # older than the ring holds: both refuse
                outcomes.append(str(error))
        assert outcomes[0] == outcomes[1]
        assert _held(plain) == _held(compact)
        assert list(plain.blobs(0, 10**9)) == list(compact.blobs(0, 10**9))
        assert plain.snapshot() == compact.snapshot()
    for smaller_or_larger in (1, size, size + 3):  # a different size drops the oldest entries
        again = CompactRing.restore(compact.snapshot(), smaller_or_larger)
        assert again.snapshot() == Ring.restore(plain.snapshot(), smaller_or_larger).snapshot()
        if items:
            assert _held(again) == _held(Ring.restore(plain.snapshot(), smaller_or_larger))


def test_offsets_move_back_to_zero_without_changing_what_is_held(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ring_module, "_REBASE_AT", 50)  # rebase every few puts
    rng = random.Random(7)
    plain, compact = Ring(UNIT, 5), CompactRing(UNIT, 5)
    slot = 0
    for _ in range(400):
        slot += rng.choice([1, 1, 1, 2, 7])
        blob = rng.randbytes(rng.randint(1, 30)) if rng.random() < 0.8 else None
        for ring in (plain, compact):
            ring.put(slot * UNIT, blob)
        assert _held(plain) == _held(compact)
    assert compact._base < 50 + 5 * 30  # it did rebase (400 puts of ~15 B each)
