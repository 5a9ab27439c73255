"""Quantile sketch used inside window buckets: DDSketch's logarithmic mapping, compact bins.

In: non-negative floats (seconds, tokens, tokens per second). Out: quantiles within 1% relative
error of the exact `numpy.quantile(..., method="lower")`, and a canonical byte payload for state.

Which and why: the bins, the key mapping (`ddsketch.mapping.LogarithmicMapping(0.01)`, gamma =
1.0202) and the quantile rule (rank = q * (n - 1), first bin whose running count exceeds it)
are exactly those of `ddsketch.LogCollapsingLowestDenseDDSketch(relative_accuracy=0.01,
bin_limit=BIN_LIMIT)`, so quantiles are bit-identical to it (tested). We do not keep ddsketch
objects: one costs about 2 KB of Python objects even when nearly empty, a series keeps ~1000
sketches in its rollup rings, and state must be plain data. Here a live sketch is a small dict
of the bins it touched; a closed one is a byte string (sparse or dense, 1-8 byte counts) that
merges lazily: `merge` only appends the payload, and bins are summed with numpy when a quantile
or the state is needed.

Error: for a value v > 2.3e-308 the returned quantile q' satisfies |q' - v| <= 0.01 * v, where v
is the exact "lower" quantile. Bins are bounded by `BIN_LIMIT` (1024 bins = 9 decades at 1%,
e.g. 1 ms..1e6 s); beyond it the lowest bins collapse, so only quantiles below the collapsed
range lose their guarantee (high percentiles, which alerts use, keep it). Zero, negative (clamped)
and subnormal values count as 0; NaN and infinities are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
BIN_LIMIT = 1024
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_POSITIVE = float(_MAPPING.min_possible)
_WIDTHS = ((0xFF, "<u1"), (0xFFFF, "<u2"), (0xFFFF_FFFF, "<u4"), (2**63 - 1, "<u8"))
_UNARY, _DENSE, _SPARSE = 0, 1, 2  # payload layouts, in tie-break order
_HEADER = 5  # format byte + int32 lowest key

Counts = npt.NDArray[np.int64]
_NO_ADDS: dict[int, int] = {}
_NO_PARTS: list[bytes] = []
"""Shared `_adds` and `_parts` of sketches without pending adds or payloads (never written:
writers replace them), so a sketch does not carry an empty dict and list (120 B; an open
bucket has up to 8 sketches)."""


@dataclass(frozen=True, slots=True)
class SketchState:
    """Plain-data sketch: total count, zeros, and the canonical bin payload (`b""` when no
    positive values). Equal contents give equal states, whatever the merge order."""

    count: int
    zero_count: int
    bins: bytes

    def __reduce__(self) -> tuple[type[SketchState], tuple[int, int, bytes]]:
        # Positional pickling: field names would triple the size of a small sketch.
        return (SketchState, (self.count, self.zero_count, self.bins))


def key_of(value: float) -> int:
    """DDSketch bin of a positive value."""
    return int(_MAPPING.key(value))


_LOG_MULTIPLIER = _MAPPING._multiplier  # the mapping's own constant (private attribute)
_LOG = math.log
_CEIL = math.ceil


def sketch_key(value: float) -> int | None:
    """`key_of` a value as `QuantileSketch.add` bins it: None for values that count as zero.
    (Inlined `LogarithmicMapping.key`, offset 0: the same float operations, the same keys.)"""
    if value <= _MIN_POSITIVE:
        return None
    return int(_CEIL(_LOG(value, 2) * _LOG_MULTIPLIER) + 0.0)


def value_of(key: int) -> float:
    """Representative value of a bin (within 1% of every value mapped to it)."""
    return float(_MAPPING.value(key))


class QuantileSketch:
    """Mergeable quantile sketch of non-negative values (see the module docstring)."""

    __slots__ = ("_adds", "_count", "_dense", "_parts", "_zero")

    def __init__(self) -> None:
        self._adds: dict[int, int] = _NO_ADDS
        self._parts: list[bytes] = _NO_PARTS
        self._count = 0
        self._zero = 0
        self._dense: tuple[int, Counts] | None = None

    @property
    def count(self) -> int:
        """Number of values added (zeros included)."""
        return self._count

    def add(self, value: float) -> None:
        """Add one value; NaN and infinities are ignored, values <= 0 count as zero."""
        if not math.isfinite(value):
            return
        self._count += 1
        self._dense = None
        if value <= _MIN_POSITIVE:
            self._zero += 1
            return
        key = key_of(value)
        if self._adds is _NO_ADDS:
            self._adds = {}
        self._adds[key] = self._adds.get(key, 0) + 1
        if len(self._adds) > 2 * BIN_LIMIT:
            self._collapse_adds()

    def add_key(self, key: int | None) -> None:
        """Add one finite value given as its `sketch_key` (None: a zero)."""
        self._count += 1
        self._dense = None
        if key is None:
            self._zero += 1
            return
        adds = self._adds
        if adds is _NO_ADDS:
            adds = self._adds = {}
        adds[key] = adds.get(key, 0) + 1
        if len(adds) > 2 * BIN_LIMIT:
            self._collapse_adds()

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of `other` (lazily: payloads are summed when first needed)."""
        if other._count == 0:
            return
        self._count += other._count
        self._zero += other._zero
        self._dense = None
        if other._adds and self._adds is _NO_ADDS:
            self._adds = {}
        for key, count in other._adds.items():
            self._adds[key] = self._adds.get(key, 0) + count
        if other._parts:
            if self._parts is _NO_PARTS:
                self._parts = list(other._parts)
            else:
                self._parts.extend(other._parts)
        if len(self._adds) > 2 * BIN_LIMIT:
            self._collapse_adds()

    def merge_state(self, state: SketchState) -> None:
        """Add every value of a sketch state (lazily)."""
        if state.count == 0:
            return
        self._count += state.count
        self._zero += state.zero_count
        self._dense = None
        if state.bins:
            self._add_part(state.bins)

    def merge_parts(self, count: int, zero_count: int, bins: bytes) -> None:
        """`merge_state` of a state given as its fields."""
        if count == 0:
            return
        self._count += count
        self._zero += zero_count
        self._dense = None
        if bins:
            self._add_part(bins)

    def _add_part(self, bins: bytes) -> None:
        if self._parts is _NO_PARTS:
            self._parts = [bins]
        else:
            self._parts.append(bins)

    def quantile(self, q: float) -> float | None:
        """Value at quantile `q` in [0, 1]; None when the sketch is empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if self._count == 0:
            return None
        rank = q * (self._count - 1)
        if rank < self._zero:
            return 0.0
        low, counts = self._materialise()
        running = np.cumsum(counts)
        index = int(np.searchsorted(running, rank - self._zero, side="right"))
        return value_of(low + min(index, len(counts) - 1))

    def to_state(self) -> SketchState:
        """Canonical plain-data state (sums pending payloads once)."""
        if not self._adds and len(self._parts) <= 1:
            return SketchState(self._count, self._zero, self._parts[0] if self._parts else b"")
        if not self._parts and max(self._adds) - min(self._adds) < BIN_LIMIT:
            # a live bucket's few bins: plain Python beats numpy's per-call overhead here
            return SketchState(self._count, self._zero, _encode_bins(self._adds))
        low, counts = self._materialise()
        return SketchState(self._count, self._zero, _encode(low, counts))

    @classmethod
    def from_state(cls, state: SketchState) -> QuantileSketch:
        sketch = cls()
        sketch.merge_state(state)
        return sketch

    def _materialise(self) -> tuple[int, Counts]:
        """Sum adds and payloads into one dense, collapsed bin array (cached)."""
        if self._dense is not None:
            return self._dense
        key_arrays = [np.fromiter(self._adds.keys(), np.int64, len(self._adds))]
        count_arrays = [np.fromiter(self._adds.values(), np.int64, len(self._adds))]
        for part in self._parts:
            keys, counts = _decode(part)
            key_arrays.append(keys)
            count_arrays.append(counts)
        keys = np.concatenate(key_arrays)
        counts = np.concatenate(count_arrays)
        if len(keys) == 0:
            self._dense = (0, np.zeros(0, np.int64))
            return self._dense
        low, high = int(keys.min()), int(keys.max())
        floor = high - BIN_LIMIT + 1
        if low < floor:  # collapse the lowest bins, as LogCollapsingLowestDenseDDSketch does
            keys = np.maximum(keys, floor)
            low = floor
        dense = np.zeros(high - low + 1, np.int64)
        np.add.at(dense, keys - low, counts)
        self._dense = (low, dense)
        # Keep one canonical payload instead of many: merged views stay small.
        self._adds = _NO_ADDS
        self._parts = [_encode(low, dense)]
        return self._dense

    def _collapse_adds(self) -> None:
        floor = max(self._adds) - BIN_LIMIT + 1
        low = {key: count for key, count in self._adds.items() if key < floor}
        for key in low:
            del self._adds[key]
        if low:
            self._adds[floor] = self._adds.get(floor, 0) + sum(low.values())


def _encode(low: int, dense: Counts) -> bytes:
    """Canonical payload of dense bins starting at key `low`: whichever of three layouts is
    shortest (ties in this order):

    - unary: per bin, `count` one-bits then a zero-bit, bit-packed; (values + bins) / 8 bytes,
      best for the few-values-per-bin sketches of minutes and hours;
    - dense: one count per bin over the range, 1-8 bytes wide;
    - sparse: per non-empty bin a 2-byte key step and a 1-8 byte count.
    """
    nonzero = np.flatnonzero(dense)
    if len(nonzero) == 0:
        return b""
    low += int(nonzero[0])
    dense = dense[int(nonzero[0]):int(nonzero[-1]) + 1]
    nonzero -= nonzero[0]
    width_code, dtype = next((code, dt) for code, (limit, dt) in enumerate(_WIDTHS)
                             if int(dense.max()) <= limit)
    width = 1 << width_code
    header = np.array([low], "<i4").tobytes()
    unary_bits = int(dense.sum()) + len(dense)
    sizes = ((unary_bits + 7) // 8 + 2, len(dense) * width, len(nonzero) * (2 + width))
    best = sizes.index(min(sizes))
    if best == _UNARY:
        bits = np.ones(unary_bits, np.uint8)
        bits[np.cumsum(dense + 1) - 1] = 0
        return (bytes([_UNARY]) + header + np.array([len(dense)], "<u2").tobytes()
                + np.packbits(bits).tobytes())
    if best == _DENSE:
        return bytes([_DENSE | width_code << 2]) + header + dense.astype(dtype).tobytes()
    deltas = np.diff(nonzero, prepend=0).astype("<u2")
    return (bytes([_SPARSE | width_code << 2]) + header + deltas.tobytes()
            + dense[nonzero].astype(dtype).tobytes())


def _encode_bins(bins: dict[int, int]) -> bytes:
    """`_encode` of a few bins given as {key: count} (no collapse needed): the same bytes."""
    keys = sorted(key for key, count in bins.items() if count)
    if not keys:
        return b""
    low, high = keys[0], keys[-1]
    span = high - low + 1
    largest = max(bins[key] for key in keys)
    width_code = next(code for code, (limit, _) in enumerate(_WIDTHS) if largest <= limit)
    width = 1 << width_code
    unary_bits = sum(bins[key] for key in keys) + span
    sizes = ((unary_bits + 7) // 8 + 2, span * width, len(keys) * (2 + width))
    best = sizes.index(min(sizes))
    header = low.to_bytes(4, "little", signed=True)
    if best == _UNARY:
        bits = 0
        for key in range(low, high + 1):
            count = bins.get(key, 0)
            bits = ((bits << count) | ((1 << count) - 1)) << 1  # `count` ones, then a zero
        padded = -unary_bits % 8
        return (bytes([_UNARY]) + header + span.to_bytes(2, "little")
                + (bits << padded).to_bytes((unary_bits + padded) // 8, "big"))
    if best == _DENSE:
        return bytes([_DENSE | width_code << 2]) + header + b"".join(
            bins.get(key, 0).to_bytes(width, "little") for key in range(low, high + 1))
    steps = b"".join((key - previous).to_bytes(2, "little")
                     for previous, key in zip([low, *keys], keys, strict=False))
    return (bytes([_SPARSE | width_code << 2]) + header + steps
            + b"".join(bins[key].to_bytes(width, "little") for key in keys))


def _decode(payload: bytes) -> tuple[Counts, Counts]:
    """Keys and counts of a payload made by `_encode`."""
    kind, width_code = payload[0] & 3, payload[0] >> 2
    low = int(np.frombuffer(payload, "<i4", 1, 1)[0])
    if kind == _UNARY:
        bins = int(np.frombuffer(payload, "<u2", 1, _HEADER)[0])
        bits = np.unpackbits(np.frombuffer(payload, np.uint8, offset=_HEADER + 2))
        ends = np.flatnonzero(bits == 0)[:bins]
        counts = np.diff(ends, prepend=-1).astype(np.int64) - 1
        return np.arange(low, low + bins, dtype=np.int64), counts
    width = 1 << width_code
    dtype = _WIDTHS[width_code][1]
    body = len(payload) - _HEADER
    if kind == _DENSE:
        counts = np.frombuffer(payload, dtype, body // width, _HEADER).astype(np.int64)
        return np.arange(low, low + len(counts), dtype=np.int64), counts
    n = body // (2 + width)
    deltas = np.frombuffer(payload, "<u2", n, _HEADER).astype(np.int64)
    counts = np.frombuffer(payload, dtype, n, _HEADER + 2 * n).astype(np.int64)
    return low + np.cumsum(deltas), counts
