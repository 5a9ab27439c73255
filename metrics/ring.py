"""Fixed-size rings of packed buckets, one slot per aligned interval (minute, hour or day).

In: packed bucket blobs (or None for "no data") for consecutive aligned starts. Out: the blob
of any interval still held, in memory bounded by the slot count whatever the traffic.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RingState:
    unit_ns: int
    end_unix_ns: int | None
    entries: tuple[tuple[int, bytes], ...]
    """(interval start, packed bucket) of the intervals holding data, oldest first."""


_REBASE_AT = 2**31
"""Offsets of a `CompactRing` move back to 0 past this (the joined bytes stay far smaller)."""


class CompactRing:
    """Blobs for the `size` most recent `unit_ns` intervals ending at `end_unix_ns`, joined in
    one bytes object, oldest first, with an array of their end offsets (tests/metrics/
    test_ring.py keeps the plain one-slot-per-interval ring it must behave like).

    That saves a bytes object and a list slot per blob (~50 B; a series holds about 100
    blobs, so 3-5 KB of its ~50 KB). Putting the newest interval drops the oldest from the
    front and appends (one copy of the joined bytes); `get` copies one blob out.
    """

    __slots__ = ("_base", "_ends", "_joined", "end_unix_ns", "size", "unit_ns")

    def __init__(self, unit_ns: int, size: int) -> None:
        self.unit_ns = unit_ns
        self.size = size
        self._joined = b""
        # Offsets only grow (rebased past 2**31 to fit 4 bytes): `_base` is where `_joined`
        # starts, the start of the oldest interval held; `_ends[k]` ends the k-th oldest
        # (equal ends: no data).
        self._base = 0
        self._ends = array("I", [0]) * size
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

    def _bounds(self, start_unix_ns: int) -> tuple[int, int, int]:
        """(age index, start, end in `_joined`) of a held interval."""
        index = (start_unix_ns - (self.start_unix_ns or 0)) // self.unit_ns
        ends = self._ends
        low = ends[index - 1] if index else self._base
        return index, low - self._base, ends[index] - self._base

    def get(self, start_unix_ns: int) -> bytes | None:
        """The interval's blob (blobs are never empty: an empty one reads as None)."""
        if not self.covers(start_unix_ns):
            return None
        _, low, high = self._bounds(start_unix_ns)
        return self._joined[low:high] if high > low else None

    def put(self, start_unix_ns: int, blob: bytes | None) -> None:
        """Store an interval; a newer start drops the intervals that fall out of the ring."""
        if start_unix_ns % self.unit_ns:
            raise ValueError(f"interval start {start_unix_ns} is not aligned to {self.unit_ns}")
        end = start_unix_ns + self.unit_ns
        new = blob or b""
        ends = self._ends
        if self.end_unix_ns is None or end > self.end_unix_ns:
            steps = self.size if self.end_unix_ns is None \
                else min(self.size, (end - self.end_unix_ns) // self.unit_ns)
            last = ends[-1]
            if steps >= self.size:  # nothing held survives
                self._base, self._joined = last, new
            else:
                base = ends[steps - 1]
                # one copy of the kept bytes (a slice then `+` copied them twice: ~40 KB for a
                # busy series' minute ring, at every minute it closes)
                self._joined = b"".join((memoryview(self._joined)[base - self._base:], new))
                self._base = base
            del ends[:steps]
            ends.extend(array("I", [last]) * (steps - 1))
            if self._base >= _REBASE_AT:
                for index in range(self.size - 1):
                    ends[index] -= self._base
                last -= self._base
                self._base = 0
            ends.append(last + len(new))
            self.end_unix_ns = end
            return
        if not self.covers(start_unix_ns):
            raise ValueError(f"interval {start_unix_ns} is older than the ring holds")
        index, low, high = self._bounds(start_unix_ns)  # rewriting a held interval (rare)
        self._joined = b"".join((self._joined[:low], new, self._joined[high:]))
        delta = len(new) - (high - low)
        for later in range(index, self.size):
            ends[later] += delta

    def held(self, start_unix_ns: int, end_unix_ns: int) -> list[tuple[int, bytes]]:
        """(interval start, blob) of the held intervals starting in [start, end) that hold
        data, NEWEST first (the order views list intervals in).

        Read from `_ends` at once: an interval is empty when its end equals the previous one,
        and ends never decrease, so a stretch without data costs one comparison and each
        blob one bisect (most minutes of most series are empty: `get` per interval cost
        ~1 us each, most of it finding nothing)."""
        if self.end_unix_ns is None:
            return []
        unit = self.unit_ns
        oldest = self.end_unix_ns - self.size * unit
        first = max(start_unix_ns - oldest, 0)
        first = -(-first // unit)  # the first interval starting at or after `start`
        last = min(-(-(end_unix_ns - oldest) // unit), self.size)  # exclusive
        if last <= first:
            return []
        ends = self._ends
        base = self._base
        previous = ends[first - 1] if first else base
        if ends[last - 1] == previous:
            return []
        joined = self._joined
        out: list[tuple[int, bytes]] = []
        index = first
        while True:
            index = bisect_right(ends, previous, index, last)  # the next interval with data
            if index == last:
                break
            end = ends[index]
            out.append((oldest + index * unit, joined[previous - base:end - base]))
            previous = end
            index += 1
        out.reverse()
        return out

    def has_data(self, start_unix_ns: int, end_unix_ns: int) -> bool:
        """Whether any held interval starting in [start, end) holds data (`held` is not
        empty), from two offsets: the ends of the intervals before and in the range."""
        if self.end_unix_ns is None:
            return False
        unit = self.unit_ns
        oldest = self.end_unix_ns - self.size * unit
        first = -(-max(start_unix_ns - oldest, 0) // unit)
        last = min(-(-(end_unix_ns - oldest) // unit), self.size)
        if last <= first:
            return False
        ends = self._ends
        return ends[last - 1] != (ends[first - 1] if first else self._base)

    def blobs(self, start_unix_ns: int, end_unix_ns: int) -> Iterator[bytes]:
        """Blobs of held intervals starting in [start, end), oldest first."""
        for _, blob in reversed(self.held(start_unix_ns, end_unix_ns)):
            yield blob

    def snapshot(self) -> RingState:
        entries: tuple[tuple[int, bytes], ...] = ()
        if self.end_unix_ns is not None:
            entries = tuple(reversed(self.held(self.end_unix_ns - self.size * self.unit_ns,
                                               self.end_unix_ns)))
        return RingState(self.unit_ns, self.end_unix_ns, entries)

    @classmethod
    def restore(cls, state: RingState, size: int) -> CompactRing:
        """A ring of `size` slots (may differ from the snapshot's: older entries then drop)."""
        ring = cls(state.unit_ns, size)
        ring.end_unix_ns = state.end_unix_ns
        start = ring.start_unix_ns
        if start is None:
            return ring
        by_index = {(at - start) // ring.unit_ns: blob for at, blob in state.entries
                    if ring.covers(at)}
        total = 0
        for index in range(size):
            total += len(by_index.get(index, b""))
            ring._ends[index] = total
        ring._joined = b"".join(by_index[index] for index in sorted(by_index))
        return ring
