"""Fixed-size rings of packed buckets, one slot per aligned interval (minute, hour or day).

In: packed bucket blobs (or None for "no data") for consecutive aligned starts. Out: the blob
of any interval still held, in memory bounded by the slot count whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RingState:
    unit_ns: int
    end_unix_ns: int | None
    entries: tuple[tuple[int, bytes], ...]
    """(interval start, packed bucket) of the intervals holding data, oldest first."""


class Ring:
    """Blobs for the `size` most recent `unit_ns` intervals ending at `end_unix_ns`."""

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
