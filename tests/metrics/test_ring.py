"""Rings of packed blobs: a `CompactRing` (blobs joined in one bytes object) holds exactly what
a plain `Ring` holds, for any sequence of puts, and both restore from their snapshots."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metrics.ring as ring_module
from metrics.ring import CompactRing, RingState


class Ring:
    """The reference model: blobs for the `size` most recent `unit_ns` intervals ending at
    `end_unix_ns`, one list slot per interval (what the windows used before CompactRing)."""

    __slots__ = ("_slots", "end_unix_ns", "size", "unit_ns")

    def __init__(self, unit_ns: int, size: int) -> None:
        self.unit_ns = unit_ns
        self.size = size
        self._slots: list[bytes | None] = [None] * size
        self.end_unix_ns: int | None = None
        """End of the newest interval held (exclusive); None before the first `put`."""

    @property
    def start_unix_ns(self) -> int | None:
        """Start of the oldest interval held."""
        return None if self.end_unix_ns is None else self.end_unix_ns - self.size * self.unit_ns

    def covers(self, start_unix_ns: int) -> bool:
        """Whether the interval starting at `start_unix_ns` is (still) held."""
        low = self.start_unix_ns
        return low is not None and self.end_unix_ns is not None \
            and low <= start_unix_ns < self.end_unix_ns

    def get(self, start_unix_ns: int) -> bytes | None:
        if not self.covers(start_unix_ns):
            return None
        return self._slots[(start_unix_ns // self.unit_ns) % self.size]

    def put(self, start_unix_ns: int, blob: bytes | None) -> None:
        """Store an interval; a newer start drops the intervals that fall out of the ring."""
        if start_unix_ns % self.unit_ns:
            raise ValueError(f"interval start {start_unix_ns} is not aligned to {self.unit_ns}")
        end = start_unix_ns + self.unit_ns
        if self.end_unix_ns is None or end > self.end_unix_ns:
            old_end = self.end_unix_ns if self.end_unix_ns is not None else end - self.unit_ns
            cleared = min(self.size, (end - old_end) // self.unit_ns)
            for step in range(cleared):
                self._slots[((end // self.unit_ns) - 1 - step) % self.size] = None
            self.end_unix_ns = end
        elif not self.covers(start_unix_ns):
            raise ValueError(f"interval {start_unix_ns} is older than the ring holds")
        self._slots[(start_unix_ns // self.unit_ns) % self.size] = blob

    def blobs(self, start_unix_ns: int, end_unix_ns: int) -> Iterator[bytes]:
        """Blobs of held intervals starting in [start, end)."""
        if self.end_unix_ns is None:
            return
        low = max(start_unix_ns, self.end_unix_ns - self.size * self.unit_ns)
        low += -low % self.unit_ns
        for start in range(low, min(end_unix_ns, self.end_unix_ns), self.unit_ns):
            blob = self._slots[(start // self.unit_ns) % self.size]
            if blob is not None:
                yield blob

    def snapshot(self) -> RingState:
        entries = []
        if self.end_unix_ns is not None:
            for start in range(self.end_unix_ns - self.size * self.unit_ns, self.end_unix_ns,
                               self.unit_ns):
                blob = self._slots[(start // self.unit_ns) % self.size]
                if blob is not None:
                    entries.append((start, blob))
        return RingState(self.unit_ns, self.end_unix_ns, tuple(entries))

    @classmethod
    def restore(cls, state: RingState, size: int) -> Ring:
        """A ring of `size` slots (may differ from the snapshot's: older entries then drop)."""
        ring = cls(state.unit_ns, size)
        ring.end_unix_ns = state.end_unix_ns
        for start, blob in state.entries:
            if ring.covers(start):
                ring._slots[(start // ring.unit_ns) % size] = blob
        return ring


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
