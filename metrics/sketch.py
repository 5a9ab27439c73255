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
or the state is needed (all of a view's payloads decoded in one pass). A live sketch's few bins
encode in plain Python (`_encode_bins`): numpy's per-call cost is larger than the work there.

Error: for a value v > 2.3e-308 the returned quantile q' satisfies |q' - v| <= 0.01 * v, where v
is the exact "lower" quantile. Bins are bounded by `BIN_LIMIT` (1024 bins = 9 decades at 1%,
e.g. 1 ms..1e6 s); beyond it the lowest bins collapse, so only quantiles below the collapsed
range lose their guarantee (high percentiles, which alerts use, keep it). Zero, negative (clamped)
and subnormal values count as 0; NaN and infinities are ignored.
"""

from __future__ import annotations

import collections
import math
import operator
import struct
from bisect import bisect_right
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from typing import Any

import numpy as np
import numpy.typing as npt
from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
BIN_LIMIT = 1024
SMALL_PAYLOAD = 64
"""Largest payload (bytes) `merge_live_parts` decodes into a sketch's bins: about where plain
Python decoding stops beating `_materialise`'s numpy calls (measured at close, 2026-11)."""
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_POSITIVE = float(_MAPPING.min_possible)
_WIDTHS = ((0xFF, "<u1"), (0xFFFF, "<u2"), (0xFFFF_FFFF, "<u4"), (2**63 - 1, "<u8"))
_UNARY, _DENSE, _SPARSE = 0, 1, 2  # payload layouts, in tie-break order
_HEADER = 5  # format byte + int32 lowest key
_HEAD = struct.Struct("<Bi")  # format byte, lowest key
_UNARY_HEAD = struct.Struct("<BiH")  # then, in the unary layout, the number of bins
_UNARY_HEAD_DTYPE = np.dtype([("layout", "u1"), ("low", "<i4"), ("bins", "<u2")])
_ADD = operator.add
_STRUCT_CODES = "BHIQ"  # struct's codes of `_WIDTHS`
_RUNS = ["1" * count + "0" for count in range(256)]
"""Unary code of a byte count: `count` ones, then a zero (a `str.translate` table)."""

Counts = npt.NDArray[np.int64]
Dense = tuple[int, list[int], list[int]]
"""A sketch's summed bins: lowest key, count per key from it, running sum of the counts (plain
lists: a quantile is one `bisect` of the running sum)."""
PLAIN_SUM_MAX = 96
"""Largest total payload (bytes) `_materialise` sums in plain Python (`_plain_dense`) rather
than numpy, whose dozen calls cost ~50 us whatever the size, against ~0.1 us a bin in Python:
a view's 2-3 small minute payloads (50-80 bytes) took 34 us instead of 57; 5 payloads of
130 bytes, 76 instead of 61 (measured 2026-11, bench traffic and synthetic minutes)."""
_NO_ADDS: dict[int, int] = {}
_NO_PARTS: list[bytes] = []
"""Shared `_adds` and `_parts` of sketches without pending adds or payloads (never written:
writers replace them), so a sketch does not carry an empty dict and list (120 B; an open
bucket has up to 8 sketches)."""
count_elements: Callable[[MutableMapping[Any, int], Iterable[Any]], None] = \
    collections._count_elements  # type: ignore[attr-defined]
"""`mapping[item] = mapping.get(item, 0) + 1` for each item, in order, in C (what
`Counter(items)` runs; CPython keeps a pure-Python fallback under the same name): counts into
a plain dict without a `Counter`'s Python-level set-up and copy."""


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


KEY_MULTIPLIER: float = _MAPPING._multiplier  # the mapping's own constant (private attribute)
KEY_ZERO_AT_MOST = _MIN_POSITIVE
"""Values up to this count as zero (`sketch_key` None)."""
LN2 = math.log(2)
"""CPython's `math.log(value, 2)` is `math.log(value) / math.log(2)` (the two logs divided):
dividing by this constant gives the same float without computing log(2) on every call."""
_LOG = math.log
_CEIL = math.ceil


def sketch_key(value: float) -> int | None:
    """`key_of` a value as `QuantileSketch.add` bins it: None for values that count as zero.
    (Inlined `LogarithmicMapping.key`, offset 0: the same float operations, the same keys;
    `ceil` of a float already is the int `key_of` converts it to.)"""
    if value <= KEY_ZERO_AT_MOST:
        return None
    return _CEIL(_LOG(value) / LN2 * KEY_MULTIPLIER)


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
        self._dense: Dense | None = None

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

    def add_keys(self, keys: Sequence[int | None]) -> None:
        """`add_key` of each key in turn, the same state (bins in the same order, zeros), at a
        fraction of the cost: a batch's keys are counted in C into the bins dict. When the
        bins could pass `2 * BIN_LIMIT` on the way (one by one collapses them as soon as
        they do, and collapsing earlier or later may keep different bins), the keys are added
        one by one."""
        n = len(keys)
        if n == 0:
            return
        adds = self._adds
        if len(adds) + n > 2 * BIN_LIMIT:
            self._add_keys_many(keys)
            return
        bins: dict[Any, int] = {} if adds is _NO_ADDS else adds
        count_elements(bins, keys)
        zeros = bins.pop(None, 0)  # zeros are counted, not binned
        self._count += n
        self._zero += zeros
        self._dense = None
        if bins:
            self._adds = bins

    def _add_keys_many(self, keys: Sequence[int | None]) -> None:
        """`add_keys` of more keys than the bins' bound: counted apart first, so that one by
        one (and its collapses) is needed only when the bins really pass the bound."""
        counts: dict[Any, int] = {}
        count_elements(counts, keys)
        zeros = counts.pop(None, 0)
        adds = self._adds
        if len(adds) + len(counts) > 2 * BIN_LIMIT and \
                len(adds.keys() | counts.keys()) > 2 * BIN_LIMIT:
            for key in keys:
                self.add_key(key)
            return
        self._count += len(keys)
        self._zero += zeros
        self._dense = None
        if counts:
            self._add_counts(counts, owned=True)

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of `other` (lazily: payloads are summed when first needed)."""
        if other._count == 0:
            return
        self._count += other._count
        self._zero += other._zero
        self._dense = None
        if other._adds:
            self._add_counts(other._adds)
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
        if bins:  # `_add_part`, inlined: a view merges up to 60 states per sketch
            if self._parts is _NO_PARTS:
                self._parts = [bins]
            else:
                self._parts.append(bins)

    def live_fields(self) -> tuple[int, int, bytes | dict[int, int]]:
        """`state_fields` for `flows.wire`: a live sketch's bins as their own dict (not
        encoded: pickled at once, read by `merge_live_parts` on arrival; the caller must not
        change it), a sketch holding payloads as its canonical payload."""
        if self._parts:
            return self.state_fields()
        return (self._count, self._zero, self._adds)

    def merge_live_parts(self, count: int, zero_count: int,
                         bins: bytes | dict[int, int]) -> None:
        """`merge_parts` of a live minute's partial received from another process
        (`live_fields`), so the sketch merges and encodes in plain Python like a local one at
        minute close instead of taking `_materialise`'s numpy path: bins given as a dict are
        added to the pending adds, a small payload (5-30 bins) is decoded into them (plain
        Python, `_decode_into`); a large one stays lazy (numpy, as views and rollups)."""
        if count == 0:
            return
        if isinstance(bins, bytes) and len(bins) > SMALL_PAYLOAD:
            self.merge_parts(count, zero_count, bins)
            return
        self._count += count
        self._zero += zero_count
        self._dense = None
        if not bins:
            return
        if isinstance(bins, dict):
            self._add_counts(bins)  # copied if taken whole: pickle may share one dict twice
        else:
            if self._adds is _NO_ADDS:
                self._adds = {}
            _decode_into(bins, self._adds)
        if len(self._adds) > 2 * BIN_LIMIT:
            self._collapse_adds()

    def _add_counts(self, counts: dict[int, int], *, owned: bool = False) -> None:
        """Add {key: count} to the pending adds, new keys in `counts`' order (as one by one
        inserts them); `owned`: `counts` may become the adds themselves (else it is copied)."""
        adds = self._adds
        if adds is _NO_ADDS:
            self._adds = counts if owned else dict(counts)
            return
        get = adds.get
        for key, count in counts.items():
            adds[key] = get(key, 0) + count

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
        low, counts, running = self._materialise()
        # (ints against a float: compared exactly, as numpy's `searchsorted(side="right")`)
        index = bisect_right(running, rank - self._zero)
        return value_of(low + min(index, len(counts) - 1))

    def to_state(self) -> SketchState:
        """Canonical plain-data state (sums pending payloads once)."""
        return SketchState(self._count, self._zero, self.payload())

    def state_fields(self) -> tuple[int, int, bytes]:
        """`to_state()` as its `(count, zero_count, bins)` tuple, as packed blobs hold it."""
        return (self._count, self._zero, self.payload())

    def payload(self) -> bytes:
        """The state's canonical bin payload (`SketchState.bins`)."""
        if not self._adds:
            parts = self._parts
            if len(parts) <= 1:
                return parts[0] if parts else b""
        elif not self._parts:
            # a live bucket's few bins: plain Python beats numpy's per-call overhead here
            encoded = _encode_bins(self._adds, BIN_LIMIT)
            if encoded is not None:
                return encoded
        low, counts, _ = self._materialise()
        parts = self._parts
        # `_materialise` just encoded the sum as the one part: no need to encode it again
        return parts[0] if len(parts) == 1 and not self._adds \
            else _encode_dense(low, np.array(counts, np.int64))

    @classmethod
    def from_state(cls, state: SketchState) -> QuantileSketch:
        sketch = cls()
        sketch.merge_state(state)
        return sketch

    def _materialise(self) -> Dense:
        """Sum adds and payloads into one dense, collapsed bin row (cached, with its running
        sum: a view asks for up to three quantiles of a sketch); small payloads in plain
        Python (`PLAIN_SUM_MAX`), larger ones with numpy."""
        if self._dense is not None:
            return self._dense
        parts = self._parts
        if not self._adds and len(parts) == 1:
            run = _run_of(parts[0])
            if run is not None:
                # One payload (a 1-minute view, a restored state): its bins are already dense
                # and collapsed, and the payload is already the canonical one.
                self._dense = (run[0], run[1], list(accumulate(run[1])))
                return self._dense
        if sum(map(len, parts)) <= PLAIN_SUM_MAX:
            plain = self._plain_dense()
            if plain is not None:
                return plain
        key_arrays, count_arrays = _decode_parts(parts)
        if self._adds:
            key_arrays.append(np.fromiter(self._adds.keys(), np.int64, len(self._adds)))
            count_arrays.append(np.fromiter(self._adds.values(), np.int64, len(self._adds)))
        if len(key_arrays) == 1:
            keys, counts = key_arrays[0], count_arrays[0]
        elif key_arrays:
            keys, counts = np.concatenate(key_arrays), np.concatenate(count_arrays)
        else:
            keys = counts = np.zeros(0, np.int64)
        if len(keys) == 0:
            self._dense = (0, [], [])
            return self._dense
        low, high = int(keys.min()), int(keys.max())
        floor = high - BIN_LIMIT + 1
        if low < floor:  # collapse the lowest bins, as LogCollapsingLowestDenseDDSketch does
            keys = np.maximum(keys, floor)
            low = floor
        dense = np.zeros(high - low + 1, np.int64)
        np.add.at(dense, keys - low, counts)
        self._dense = (low, dense.tolist(), dense.cumsum().tolist())
        # Keep one canonical payload instead of many: merged views stay small.
        self._adds = _NO_ADDS
        self._parts = [_encode_dense(low, dense)]
        return self._dense

    def _plain_dense(self) -> Dense | None:
        """`_materialise`'s sum in plain Python: the payloads' runs of counts (`_run_of`) added
        slice by slice into one row, the pending adds added, the canonical payload encoded
        from the row (`_encode_counts`). None, changing nothing, for a sparse payload or bins
        that need the collapse (they span more than `BIN_LIMIT` keys)."""
        runs = []
        for part in self._parts:
            run = _run_of(part)
            if run is None:
                return None
            runs.append(run)
        adds = self._adds
        # (payloads begin and end with non-empty bins: these are numpy's keys.min/max)
        lows = [low for low, _ in runs]
        highs = [low + len(counts) - 1 for low, counts in runs]
        if adds:
            lows.append(min(adds))
            highs.append(max(adds))
        if not lows:
            return None
        low = min(lows)
        span = max(highs) - low + 1
        if span > BIN_LIMIT:
            return None
        row = [0] * span
        for first, counts in runs:
            at = first - low
            row[at:at + len(counts)] = map(_ADD, row[at:at + len(counts)], counts)
        for key, count in adds.items():
            row[key - low] += count
        payload = _encode_counts(low, row)
        self._dense = (low, row, list(accumulate(row)))
        self._adds = _NO_ADDS
        self._parts = [payload]
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


def _encode_bins(bins: dict[int, int], span_limit: int = 0xFFFF) -> bytes | None:
    """`_encode` of a few bins given as {key: count}: the same bytes; None when the keys span
    more than `span_limit` bins (a sketch's bins then need `_materialise`'s collapse).

    Written for a live bucket's 5-30 bins, where numpy's per-call overhead dominates: the
    layout is picked from the counts' sum first, then only its bytes are built: the unary bits
    as one string of `_RUNS` (empty bins "0") read by `int(..., 2)`, the dense row as a
    bytearray over the key range; a count above 255 takes `_encode_wide`."""
    counts = bins.values()
    least = min(counts)
    if least <= 0 and not all(counts):
        bins = {key: count for key, count in bins.items() if count}
        if not bins:
            return b""
        counts = bins.values()
        least = min(counts)
    low = min(bins)
    span = max(bins) - low + 1
    if span > span_limit:
        return None
    if least < 0:  # not a sketch's, but as before: `_encode_wide`
        return _encode_wide(bins, low, span)
    # a count above 255 does not fit (IndexError, ValueError) and takes `_encode_wide`
    layout = _byte_layout(sum(counts), span, len(bins))
    try:
        if layout == _UNARY:
            runs = ["0"] * span
            for key, count in bins.items():
                runs[key - low] = _RUNS[count]
            return _unary_payload(low, span, "".join(runs))
        if layout == _DENSE:
            row = bytearray(span)
            for key, count in bins.items():
                row[key - low] = count
            return _HEAD.pack(_DENSE, low) + row
        keys = sorted(bins)
        return (_HEAD.pack(_SPARSE, low) + _steps(keys, low)
                + bytes(map(bins.__getitem__, keys)))
    except (IndexError, ValueError):
        return _encode_wide(bins, low, span)


def _encode_dense(low: int, dense: Counts) -> bytes:
    """`_encode`, the same bytes, with fewer numpy calls when every count fits a byte (the
    sums of views and hourly rollups, mostly)."""
    largest = int(dense.max()) if len(dense) else 0
    if not 0 < largest <= 0xFF:
        return _encode(low, dense)
    row = dense.astype(np.uint8).tobytes()
    trimmed = row.lstrip(b"\0")
    row = trimmed.rstrip(b"\0")
    encoded = _encode_row(low + len(dense) - len(trimmed), row, int(dense.sum()),
                          len(row) - row.count(0))
    return _encode(low, dense) if encoded is None else encoded  # sparse: numpy's steps


def _encode_counts(low: int, row: list[int]) -> bytes:
    """`_encode_dense` of counts given as a list, without numpy when each fits a byte (and
    `_encode_row` does not pick sparse): the same bytes."""
    largest = max(row, default=0)
    if 0 < largest <= 0xFF:
        data = bytes(row)
        trimmed = data.lstrip(b"\0")
        data = trimmed.rstrip(b"\0")
        encoded = _encode_row(low + len(row) - len(trimmed), data, sum(row),
                              len(data) - data.count(0))
        if encoded is not None:
            return encoded
    return _encode_dense(low, np.array(row, np.int64))


def _encode_row(low: int, row: bytes | bytearray, total: int, bins: int) -> bytes | None:
    """The unary or dense layout of byte counts `row` (first and last non-zero) from key `low`,
    whichever `_encode` picks; None when it picks sparse."""
    layout = _byte_layout(total, len(row), bins)
    if layout == _UNARY:
        return _unary_payload(low, len(row), row.decode("latin-1").translate(_RUNS))
    if layout == _DENSE:
        return _HEAD.pack(_DENSE, low) + row
    return None


def _byte_layout(total: int, span: int, bins: int) -> int:
    """The layout `_encode` picks for `bins` non-zero byte counts summing to `total` over
    `span` keys: the smallest of unary, dense and sparse, ties in that order."""
    unary = (total + span + 7) // 8 + 2
    sparse = 3 * bins
    if unary <= span and unary <= sparse:
        return _UNARY
    return _DENSE if span <= sparse else _SPARSE


def _unary_payload(low: int, span: int, bits: str) -> bytes:
    """The unary layout from its bits as a string of "0"/"1" (`_RUNS` per key), padded."""
    padded = int(bits, 2) << (-len(bits) % 8)
    return _UNARY_HEAD.pack(_UNARY, low, span) + padded.to_bytes((len(bits) + 7) // 8, "big")


def _encode_wide(bins: dict[int, int], low: int, span: int) -> bytes:
    """`_encode_bins` when a count needs 2-8 bytes."""
    keys = sorted(bins)
    counts = bins.values()
    largest = max(counts)
    width_code = next(code for code, (limit, _) in enumerate(_WIDTHS) if largest <= limit)
    width = 1 << width_code
    unary_bits = sum(counts) + span
    sizes = ((unary_bits + 7) // 8 + 2, span * width, len(keys) * (2 + width))
    best = sizes.index(min(sizes))
    if best == _UNARY:
        row = map(bins.get, range(low, low + span), repeat(0, span))
        ones = int("0".join(map("1".__mul__, row)) + "0", 2) << (-unary_bits % 8)
        return _UNARY_HEAD.pack(_UNARY, low, span) + ones.to_bytes(sizes[0] - 2, "big")
    code = _STRUCT_CODES[width_code]
    if best == _DENSE:
        return _HEAD.pack(_DENSE | width_code << 2, low) + struct.pack(
            f"<{span}{code}", *map(bins.get, range(low, low + span), repeat(0, span)))
    return (_HEAD.pack(_SPARSE | width_code << 2, low) + _steps(keys, low)
            + struct.pack(f"<{len(keys)}{code}", *map(bins.__getitem__, keys)))


def _steps(keys: list[int], low: int) -> bytes:
    """Sparse layout's 2-byte key steps (the first from `low`, i.e. 0)."""
    return struct.pack(f"<{len(keys)}H", *map(operator.sub, keys, [low, *keys]))


def _decode_parts(parts: list[bytes]) -> tuple[list[Counts], list[Counts]]:
    """Keys and counts of payloads made by `_encode` (as arrays to concatenate; keys may
    repeat). A view or rollup sums up to 60 payloads per sketch, mostly unary and dense with
    1-byte counts: those are decoded all at once, numpy's per-call cost paid once, not per part.
    """
    unary: list[bytes] = []
    dense: list[bytes] = []
    key_arrays: list[Counts] = []
    count_arrays: list[Counts] = []
    for part in parts:
        layout = part[0]
        if layout == _UNARY:
            unary.append(part)
        elif layout == _DENSE:  # width code 0: 1-byte counts
            dense.append(part)
        else:
            keys, counts = _decode(part)
            key_arrays.append(keys)
            count_arrays.append(counts)
    for group, decode in ((unary, _decode_unary), (dense, _decode_dense_bytes)):
        if len(group) == 1:
            run = _run_of(group[0])
            assert run is not None  # the group is unary or dense
            low, row = run
            counts = np.array(row, np.int64)
            keys = np.arange(low, low + len(counts), dtype=np.int64)
        elif group:
            keys, counts = decode(group)
        else:
            continue
        key_arrays.append(keys)
        count_arrays.append(counts)
    return key_arrays, count_arrays


def _decode_unary(parts: list[bytes]) -> tuple[Counts, Counts]:
    """`_decode` of several unary payloads at once (their keys concatenated)."""
    heads = np.frombuffer(b"".join([part[:_HEADER + 2] for part in parts]), _UNARY_HEAD_DTYPE)
    bins = heads["bins"].astype(np.int64)
    sizes = np.fromiter(map(len, parts), np.int64, len(parts))
    # the bits of the whole payloads: a part's header bits lie before its first body bit
    bits = np.unpackbits(np.frombuffer(b"".join(parts), np.uint8))
    zeros = np.flatnonzero(bits == 0)  # each bin's closing zero, then a part's padding zeros
    starts = (np.cumsum(sizes) - sizes + _HEADER + 2) * 8  # each part's first body bit
    first_bin = np.cumsum(bins) - bins  # each part's first bin in the output
    # the first `bins` zeros from each part's body end its bins
    ends = zeros[np.repeat(np.searchsorted(zeros, starts) - first_bin, bins)
                 + np.arange(int(first_bin[-1] + bins[-1]))]
    previous = np.empty_like(ends)
    previous[1:] = ends[:-1]
    previous[first_bin] = starts - 1
    keys = np.repeat(heads["low"] - first_bin, bins) + np.arange(len(ends))
    return keys, ends - previous - 1


def _decode_dense_bytes(parts: list[bytes]) -> tuple[Counts, Counts]:
    """`_decode` of several dense payloads with 1-byte counts at once."""
    lows = np.array([_HEAD.unpack_from(part)[1] for part in parts], np.int64)
    sizes = np.fromiter(map(len, parts), np.int64, len(parts)) - _HEADER
    counts = np.frombuffer(b"".join([part[_HEADER:] for part in parts]), np.uint8)
    first = np.cumsum(sizes) - sizes
    keys = np.repeat(lows - first, sizes) + np.arange(len(counts))
    return keys, counts.astype(np.int64)


def _run_of(payload: bytes) -> tuple[int, list[int]] | None:
    """Lowest key and counts of a unary or dense payload (None for sparse), as a plain list:
    `_decode` without numpy calls (unary bits split as a string of 0/1)."""
    layout, width_code = payload[0] & 3, payload[0] >> 2
    if layout == _UNARY:
        _, low, bins = _UNARY_HEAD.unpack_from(payload)
        body = payload[_HEADER + 2:]
        runs = f"{int.from_bytes(body, 'big'):0{8 * len(body)}b}".split("0", bins)
        del runs[bins:]  # padding
        return low, list(map(len, runs))
    if layout == _DENSE:
        low = _HEAD.unpack_from(payload)[1]
        if width_code == 0:
            return low, list(payload[_HEADER:])
        size = (len(payload) - _HEADER) >> width_code
        return low, list(struct.unpack_from(f"<{size}{_STRUCT_CODES[width_code]}", payload,
                                            _HEADER))
    return None


def _decode_into(payload: bytes, bins: dict[int, int]) -> None:
    """Add the bins of a payload made by `_encode` to `bins` ({key: count}, no zero counts):
    `_decode` in plain Python, cheaper than numpy's per-call cost for a small payload. (Empty
    bins are skipped by `compress`/`filter`, not a Python loop: a unary span is mostly them.)"""
    layout, width_code = payload[0] & 3, payload[0] >> 2
    keys: Iterable[int]
    counts: Iterable[int]
    if layout == _UNARY:
        _, low, span = _UNARY_HEAD.unpack_from(payload)
        body = payload[_HEADER + 2:]
        runs = f"{int.from_bytes(body, 'big'):0{8 * len(body)}b}".split("0", span)
        del runs[span:]  # padding
        keys = compress(range(low, low + span), runs)
        counts = map(len, filter(None, runs))
    else:
        low = _HEAD.unpack_from(payload)[1]
        code = _STRUCT_CODES[width_code]
        width = 1 << width_code
        if layout == _DENSE:
            size = (len(payload) - _HEADER) // width
            row = payload[_HEADER:] if width_code == 0 else \
                struct.unpack_from(f"<{size}{code}", payload, _HEADER)
            keys = compress(range(low, low + size), row)
            counts = filter(None, row)
        else:
            size = (len(payload) - _HEADER) // (2 + width)
            steps = struct.unpack_from(f"<{size}H", payload, _HEADER)
            keys = accumulate(steps[1:], initial=low)  # the first step is 0
            counts = struct.unpack_from(f"<{size}{code}", payload, _HEADER + 2 * size)
    if not bins:
        bins.update(zip(keys, counts, strict=True))
        return
    get = bins.get
    for key, count in zip(keys, counts, strict=True):
        bins[key] = get(key, 0) + count


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
