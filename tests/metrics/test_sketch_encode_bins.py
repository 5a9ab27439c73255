"""`_encode_bins` (rewritten for speed, 2026-11) writes the bytes of the encoder it replaced.

Payload bytes are part of the frozen blob format 2, so the previous implementation is kept
here verbatim as the reference and both are run on random bins, including the inputs no
sketch makes (zero and negative counts), where the outcome (bytes, None or the exception)
must match too.
"""

from __future__ import annotations

import operator
import struct
from itertools import repeat

from hypothesis import example, given, settings
from hypothesis import strategies as st

from metrics.sketch import BIN_LIMIT, QuantileSketch, _encode_bins

# --- the reference: the encoder as it was before the rewrite (metrics/sketch.py, 2026-11) ---

_WIDTHS = ((0xFF, "<u1"), (0xFFFF, "<u2"), (0xFFFF_FFFF, "<u4"), (2**63 - 1, "<u8"))
_UNARY, _DENSE, _SPARSE = 0, 1, 2
_HEAD = struct.Struct("<Bi")
_UNARY_HEAD = struct.Struct("<BiH")
_STRUCT_CODES = "BHIQ"
_RUNS = ["1" * count + "0" for count in range(256)]


def _reference(bins: dict[int, int], span_limit: int = 0xFFFF) -> bytes | None:
    counts = bins.values()
    if not all(counts):
        bins = {key: count for key, count in bins.items() if count}
        if not bins:
            return b""
        counts = bins.values()
    low = min(bins)
    span = max(bins) - low + 1
    if span > span_limit:
        return None
    row = bytearray(span)
    try:
        for key, count in bins.items():
            row[key - low] = count
    except ValueError:
        return _reference_wide(bins, low, span)
    encoded = _reference_row(low, row, sum(counts), len(bins))
    if encoded is not None:
        return encoded
    keys = sorted(bins)
    return (_HEAD.pack(_SPARSE, low) + _reference_steps(keys, low)
            + bytes(map(bins.__getitem__, keys)))


def _reference_row(low: int, row: bytearray, total: int, bins: int) -> bytes | None:
    span = len(row)
    unary_bits = total + span
    unary = (unary_bits + 7) // 8 + 2
    sparse = 3 * bins
    if unary <= span and unary <= sparse:
        ones = int(row.decode("latin-1").translate(_RUNS), 2) << (-unary_bits % 8)
        return _UNARY_HEAD.pack(_UNARY, low, span) + ones.to_bytes(unary - 2, "big")
    if span <= sparse:
        return _HEAD.pack(_DENSE, low) + row
    return None


def _reference_wide(bins: dict[int, int], low: int, span: int) -> bytes:
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
    return (_HEAD.pack(_SPARSE | width_code << 2, low) + _reference_steps(keys, low)
            + struct.pack(f"<{len(keys)}{code}", *map(bins.__getitem__, keys)))


def _reference_steps(keys: list[int], low: int) -> bytes:
    return struct.pack(f"<{len(keys)}H", *map(operator.sub, keys, [low, *keys]))


# --- the comparison ---


def _outcome(encode: object, bins: dict[int, int], span_limit: int) -> object:
    """What an encoder gives: its bytes or None, or the type of what it raised."""
    try:
        return encode(bins, span_limit)  # type: ignore[operator]
    except Exception as error:  # noqa: BLE001 - compared, not handled
        return type(error)


# A live minute's bins: 1-40 keys over up to ~150 bins, counts mostly 1-3 (the bench traffic).
minute_bins = st.dictionaries(st.integers(-2000, 2000), st.integers(1, 3) | st.integers(1, 40),
                              min_size=1, max_size=40)
# Anything: wide counts, zero and negative counts (no sketch makes those), wide spans.
any_bins = st.dictionaries(
    st.integers(-70_000, 70_000),
    st.integers(-3, 3) | st.integers(0, 300) | st.integers(0, 2**64) | st.sampled_from(
        [255, 256, 0xFFFF, 0x10000, 2**32 - 1, 2**32, 2**63 - 1]),
    min_size=1, max_size=60)


@settings(max_examples=1500)
@given(minute_bins, st.sampled_from([BIN_LIMIT, 0xFFFF]))
@example({5: 1}, BIN_LIMIT)                           # one bin: dense
@example({0: 1, 1: 2, 3: 1}, 0xFFFF)                  # unary
@example({0: 200, 1: 180, 2: 90}, 0xFFFF)             # dense
@example({0: 9, 500: 7}, 0xFFFF)                      # sparse
@example({0: 3, 3: 2}, 0xFFFF)                        # unary and dense sizes tie: unary
@example({0: 50, 5: 50}, 0xFFFF)                      # dense and sparse sizes tie: dense
@example({0: 1, BIN_LIMIT: 1}, BIN_LIMIT)             # past the span limit: None
@example(dict.fromkeys(range(40), 1) | {40: 300}, 0xFFFF)  # a count above a byte
def test_minute_sized_bins_encode_as_before(bins: dict[int, int], span_limit: int) -> None:
    assert _encode_bins(bins, span_limit) == _reference(bins, span_limit)


@settings(max_examples=1500)
@given(any_bins, st.integers(1, 0xFFFF))
@example({3: 0, 5: 0}, 0xFFFF)                        # zero counts only
@example({3: 0, 5: 2, 9: -1}, 0xFFFF)                 # zero and negative
@example({0: -1, 1: 2}, 0xFFFF)                       # negative only
@example({0: -1} | dict.fromkeys(range(1, 8), 1), 0xFFFF)  # negative where unary would fit
@example({0: 1, 2: 256}, 0xFFFF)                      # 2-byte counts
@example({0: 2**40, 900: 3}, 0xFFFF)                  # sparse, 8-byte counts
def test_any_bins_give_the_same_outcome_as_before(bins: dict[int, int], span_limit: int) -> None:
    assert _outcome(_encode_bins, bins, span_limit) == _outcome(_reference, bins, span_limit)


@settings(max_examples=300)
@given(st.lists(st.integers(-500, 500) | st.none(), min_size=1, max_size=200))
def test_a_live_sketchs_state_fields_hold_the_reference_payload(keys: list[int | None]) -> None:
    sketch = QuantileSketch()
    for key in keys:
        sketch.add_key(key)
    count, zeros, payload = sketch.state_fields()
    bins = {key: keys.count(key) for key in keys if key is not None}
    expected = _reference(bins, BIN_LIMIT) if bins else b""  # (spans < BIN_LIMIT: no collapse)
    assert (count, zeros, payload) == (len(keys), keys.count(None), expected)
    assert sketch.to_state().bins == payload
