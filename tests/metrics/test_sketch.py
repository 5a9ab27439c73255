"""The quantile sketch: identical to ddsketch, within 1% of numpy, exactly mergeable."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from ddsketch import LogCollapsingLowestDenseDDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.sketch import (
    BIN_LIMIT,
    RELATIVE_ACCURACY,
    SMALL_PAYLOAD,
    QuantileSketch,
    SketchState,
    _decode,
    _decode_into,
    _decode_parts,
    _encode,
    _encode_bins,
    _encode_dense,
    _run_of,
    key_of,
)

# Durations, tokens and rates: 0, and 1e-4..1e4 (8 decades, inside the bin range).
values = st.lists(st.just(0.0) | st.floats(1e-4, 1e4), min_size=1, max_size=300)
QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def _sketch(xs: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    for x in xs:
        sketch.add(x)
    return sketch


@given(values)
def test_quantiles_are_those_of_ddsketch(xs: list[float]) -> None:
    ours = _sketch(xs)
    theirs = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT)
    for x in xs:
        theirs.add(x)
    for q in QUANTILES:
        assert ours.quantile(q) == pytest.approx(theirs.get_quantile_value(q), rel=1e-12)


@settings(max_examples=200)
@given(values)
def test_quantiles_are_within_relative_accuracy_of_numpy_lower(xs: list[float]) -> None:
    ours = _sketch(xs)
    for q in QUANTILES:
        exact = float(np.quantile(xs, q, method="lower"))
        got = ours.quantile(q)
        assert got is not None
        assert abs(got - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9), (q, got, exact)


@given(values, st.randoms(use_true_random=False))
def test_merging_in_any_grouping_equals_one_sketch(xs: list[float], rnd: random.Random) -> None:
    parts: list[QuantileSketch] = [QuantileSketch() for _ in range(rnd.randint(1, 6))]
    for x in xs:
        rnd.choice(parts).add(x)
    # some parts travel as state, then merge in a random tree
    pool: list[QuantileSketch] = [QuantileSketch.from_state(p.to_state()) if rnd.random() < 0.5
                                  else p for p in parts]
    while len(pool) > 1:
        a = pool.pop(rnd.randrange(len(pool)))
        b = pool.pop(rnd.randrange(len(pool)))
        a.merge(b)
        pool.append(a)
    assert pool[0].to_state() == _sketch(xs).to_state()


@given(values)
def test_state_round_trips_exactly(xs: list[float]) -> None:
    sketch = _sketch(xs)
    state = sketch.to_state()
    again = QuantileSketch.from_state(pickle.loads(pickle.dumps(state)))  # noqa: S301
    assert again.to_state() == state
    for q in QUANTILES:
        assert again.quantile(q) == sketch.quantile(q)


def test_empty_sketch_has_no_quantile() -> None:
    assert QuantileSketch().quantile(0.5) is None
    assert QuantileSketch().to_state() == SketchState(0, 0, b"")


def test_zero_negative_nan_and_infinite_values() -> None:
    sketch = _sketch([0.0, -3.0, float("nan"), float("inf"), 2.0])
    assert sketch.count == 3  # NaN and inf ignored, -3 clamped to zero
    assert sketch.quantile(0.0) == 0.0 and sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == pytest.approx(2.0, rel=RELATIVE_ACCURACY)


def test_bins_are_bounded_and_high_quantiles_keep_their_accuracy() -> None:
    rng = np.random.default_rng(7)
    # latencies plus a few absurdly small ones 200 decades lower: these collapse, not the top
    xs = [float(x) for x in 10 ** rng.uniform(-1, 2, 5000)] + [1e-200 * (1 + i) for i in range(50)]
    sketch = _sketch(xs)
    assert len(sketch._materialise()[1]) <= BIN_LIMIT
    low = sketch.quantile(0.0)  # the tiny values read as the lowest kept bin, ~9 decades down
    assert low is not None and 1e-8 < low < 1e-6
    for q in (0.5, 0.95, 0.99, 1.0):
        exact = float(np.quantile(xs, q, method="lower"))
        got = sketch.quantile(q)
        assert got is not None and abs(got - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9)


def test_payloads_are_compact() -> None:
    rng = np.random.default_rng(3)
    small = _sketch([float(x) for x in rng.lognormal(0.5, 0.6, 10)]).to_state()
    large = _sketch([float(x) for x in rng.lognormal(0.5, 0.6, 100_000)]).to_state()
    assert len(small.bins) <= 5 + 10 * 3  # sparse: 2-byte key step + 1-byte count per bin
    assert len(large.bins) <= 5 + 400 * 4  # dense: one count per bin over the range
    assert len(pickle.dumps(small)) < 120


@pytest.mark.parametrize(("xs", "layout"), [
    ([1.0, 1e6], 2),                          # two far-apart values: sparse
    ([1.0] * 5000 + [1.05] * 5000, 1),         # many values in few bins: dense
    ([1.0 + i / 50 for i in range(100)], 0),   # a few values per bin: unary bits
])
def test_every_payload_layout_round_trips(xs: list[float], layout: int) -> None:
    state = _sketch(xs).to_state()
    assert state.bins[0] & 3 == layout
    again = QuantileSketch.from_state(state)
    again.add(2.0)  # forces a decode and re-encode
    reference = _sketch([*xs, 2.0])
    assert again.to_state() == reference.to_state()
    assert again.quantile(0.5) == reference.quantile(0.5)


@settings(max_examples=300)
@given(st.dictionaries(st.integers(-300, 300), st.integers(1, 70_000), min_size=1, max_size=40)
       | st.dictionaries(st.integers(0, 30), st.integers(1, 3), min_size=1, max_size=30)
       # zero counts (left out), counts about the 1-byte edge, 4- and 8-byte counts
       | st.dictionaries(st.integers(-50, 600), st.integers(0, 3) | st.integers(250, 260),
                         min_size=1, max_size=60)
       | st.dictionaries(st.integers(0, 1000), st.sampled_from([1, 2**16, 2**32, 2**40]),
                         min_size=1, max_size=20))
def test_the_python_encoder_writes_the_numpy_encoders_bytes(bins: dict[int, int]) -> None:
    low = min(bins)
    dense = np.zeros(max(bins) - low + 1, np.int64)
    for key, count in bins.items():
        dense[key - low] = count
    assert _encoded(bins) == _encode(low, dense)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 3), max_size=80) | st.lists(st.integers(0, 300), max_size=80)
       | st.lists(st.sampled_from([0, 0, 0, 0, 1, 255]), max_size=600),
       st.integers(-1000, 1000))
def test_the_dense_encoder_writes_the_numpy_encoders_bytes(counts: list[int], low: int) -> None:
    dense = np.array(counts, np.int64)  # zero edges included: both trim them
    assert _encode_dense(low, dense) == _encode(low, dense)


def _encoded(bins: dict[int, int]) -> bytes:
    encoded = _encode_bins(bins)
    assert encoded is not None
    return encoded


def test_the_python_encoder_writes_every_layout_and_width() -> None:
    layouts = {_encoded(bins)[0] for bins in (
        {0: 1, 1: 2, 3: 1},                    # unary
        {0: 200, 1: 180, 2: 90},               # dense, 1-byte counts
        {0: 9, 500: 7},                        # sparse, 1-byte counts
        {0: 300, 1: 1},                        # dense, 2-byte counts (wide)
        {0: 2**40, 900: 3},                    # sparse, 8-byte counts (wide)
        dict.fromkeys(range(40), 1) | {40: 300},  # unary, a count above a byte (wide)
    )}
    assert layouts == {0, 1, 2, 1 | 1 << 2, 2 | 3 << 2}
    assert _encode_bins({3: 0, 5: 0}) == b""
    assert _encode_bins({0: 1, BIN_LIMIT: 1}, BIN_LIMIT) is None  # needs the collapse
    assert _encode_bins({0: 1, BIN_LIMIT - 1: 1}, BIN_LIMIT) == _encoded({0: 1, BIN_LIMIT - 1: 1})


def test_a_live_sketch_beyond_the_bin_limit_states_its_collapsed_bins() -> None:
    xs = [1e-200 * (1 + i) for i in range(20)] + [1.0 + i / 10 for i in range(50)]
    merged = QuantileSketch()
    for half in (xs[::2], xs[1::2]):
        merged.merge_state(_sketch(half).to_state())  # payloads: numpy sum and collapse
    live = _sketch(xs)
    assert live.to_state() == merged.to_state()
    assert len(live._materialise()[1]) <= BIN_LIMIT


def test_live_and_merged_sketches_give_the_same_state() -> None:
    xs = [0.5 + i / 7 for i in range(60)]
    live = _sketch(xs)  # dict bins -> Python encoder
    merged = QuantileSketch()
    merged.merge_state(_sketch(xs[:30]).to_state())
    merged.merge_state(_sketch(xs[30:]).to_state())  # payloads -> numpy encoder
    assert live.to_state() == merged.to_state()
    assert key_of(1.0) == 0


# Payloads of every layout and width: few values per bin (unary), many (dense), far apart
# (sparse), and counts above a byte.
payloads = st.one_of(
    st.dictionaries(st.integers(-40, 40), st.integers(1, 3), min_size=1, max_size=30),
    st.dictionaries(st.integers(0, 20), st.integers(1, 255), min_size=15, max_size=21),
    st.dictionaries(st.integers(-900, 900), st.integers(1, 9), min_size=1, max_size=5),
    st.dictionaries(st.integers(0, 60), st.integers(1, 70_000), min_size=1, max_size=30),
).map(_encoded)


def _summed(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for keys, counts in pairs:
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            out[key] = out.get(key, 0) + count
    return {key: count for key, count in out.items() if count}


@settings(max_examples=200)
@given(st.lists(payloads, min_size=1, max_size=12))
def test_decoding_many_payloads_at_once_sums_like_one_by_one(parts: list[bytes]) -> None:
    keys, counts = _decode_parts(parts)
    assert _summed(list(zip(keys, counts, strict=True))) == _summed([_decode(p) for p in parts])


@given(payloads)
def test_the_run_decoder_reads_unary_and_dense_payloads_as_decode_does(payload: bytes) -> None:
    run = _run_of(payload)
    keys, counts = _decode(payload)
    if payload[0] & 3 == 2:  # sparse: keys are not a run
        assert run is None
    else:
        assert run is not None
        assert run[0] == keys[0] and keys.tolist() == list(range(run[0], run[0] + len(keys)))
        assert run[1] == counts.tolist()


@given(values)
def test_a_sketch_of_one_state_reads_it_and_keeps_it(xs: list[float]) -> None:
    live = _sketch(xs)
    state = live.to_state()
    again = QuantileSketch.from_state(state)
    for q in QUANTILES:  # quantiles first: they sum the payload
        assert again.quantile(q) == live.quantile(q)
    assert again.to_state() == state
    again.add(3.0)
    live.add(3.0)
    assert again.to_state() == live.to_state()
    for q in QUANTILES:  # the cached sums are not stale after the add
        assert again.quantile(q) == live.quantile(q)


@given(payloads, st.dictionaries(st.integers(-50, 50), st.integers(1, 5), max_size=8))
def test_the_python_decoder_adds_a_payloads_bins_as_decode_reads_them(
        payload: bytes, already: dict[int, int]) -> None:
    bins = dict(already)
    _decode_into(payload, bins)
    assert bins == _summed([(np.array(list(already), np.int64),
                             np.array(list(already.values()), np.int64)), _decode(payload)])
    assert all(bins.values()), "no zero counts, as a live sketch's bins"


def _received(sketch: QuantileSketch, *, encoded: bool = False) -> QuantileSketch:
    """`sketch` as a partial's sketch arrives from another process (`flows.wire`): its live
    bins as a dict (`live_fields`), or `encoded` as its payload."""
    sent = sketch.state_fields() if encoded else sketch.live_fields()
    got = QuantileSketch()
    got.merge_live_parts(*pickle.loads(pickle.dumps(sent)))  # noqa: S301
    return got


minutes = st.lists(st.just(0.0) | st.floats(1e-3, 1e3) | st.sampled_from([0.2, 0.21, 0.3, 1.0]),
                   min_size=1, max_size=60)


@settings(max_examples=200)
@given(st.lists(st.tuples(minutes, st.booleans()), min_size=1, max_size=6),
       st.randoms(use_true_random=False))
def test_a_minute_merged_from_received_partials_equals_one_from_local_ones(
        partials: list[tuple[list[float], bool]], rnd: random.Random) -> None:
    """A minute's bucket merges partials in any order, some of them received (wire round
    trip): its quantiles, count and state are those of the minute with every partial local."""
    local, mixed = QuantileSketch(), QuantileSketch()
    for xs, _ in partials:
        local.merge(_sketch(xs))
    rnd.shuffle(partials)
    for i, (xs, crossed) in enumerate(partials):
        mixed.merge(_received(_sketch(xs), encoded=i % 2 == 0) if crossed else _sketch(xs))
    assert mixed.count == local.count
    assert mixed.state_fields() == local.state_fields()
    for q in QUANTILES:
        assert mixed.quantile(q) == local.quantile(q)


def test_a_small_received_payload_merges_and_encodes_without_numpy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of `merge_live_parts`: a minute mixing received and local partials encodes its
    few bins in plain Python, as an all-local minute does (no `_materialise`)."""
    xs = [0.4 + i / 9 for i in range(25)]
    want = _sketch(xs + xs[:10]).state_fields()
    received = _received(_sketch(xs), encoded=True)
    assert len(_sketch(xs).payload()) <= SMALL_PAYLOAD

    def no_numpy(self: QuantileSketch) -> None:
        raise AssertionError("took the numpy path")

    monkeypatch.setattr(QuantileSketch, "_materialise", no_numpy)
    received.merge(_sketch(xs[:10]))
    local = _sketch(xs[:10])
    local.merge(_received(_sketch(xs)))  # as a dict
    assert received.state_fields() == want == local.state_fields()


def test_a_large_received_payload_stays_lazy_and_merges_the_same() -> None:
    xs = [1.001 ** i for i in range(0, 4000, 3)]  # ~1300 values over ~1300 bins
    assert len(_sketch(xs).payload()) > SMALL_PAYLOAD
    received = _received(_sketch(xs), encoded=True)
    assert received._parts == [_sketch(xs).payload()], "kept as its payload, not decoded"
    received.merge(_sketch([2.0, 3.0]))
    local = _sketch([*xs, 2.0, 3.0])
    assert received.state_fields() == local.state_fields()
    assert received.quantile(0.99) == local.quantile(0.99)


def test_received_sketches_beyond_the_bin_limit_collapse_as_local_ones() -> None:
    low = [1e-200 * (1 + i) for i in range(20)]
    high = [1.0 + i / 10 for i in range(30)]
    for encoded in (False, True):
        mixed = _received(_sketch(low), encoded=encoded)
        mixed.merge(_sketch(high))
        assert mixed.state_fields() == _sketch(low + high).state_fields()
    empty = QuantileSketch()
    empty.merge_live_parts(0, 0, b"")
    zeros = _received(_sketch([0.0, -1.0]))
    assert empty.count == 0 and zeros.state_fields() == (2, 2, b"")


def test_a_merged_sketch_travels_as_its_payload_and_a_shared_dict_is_not_aliased() -> None:
    merged = QuantileSketch()
    merged.merge_state(_sketch([0.5, 2.0]).to_state())
    assert merged.live_fields() == merged.state_fields()
    live = _sketch([0.5, 2.0, 2.0])
    fields = pickle.loads(pickle.dumps((live.live_fields(), live.live_fields())))  # noqa: S301
    assert fields[0][2] is fields[1][2], "pickle shares a dict sent twice"
    first, second = QuantileSketch(), QuantileSketch()
    first.merge_live_parts(*fields[0])
    second.merge_live_parts(*fields[1])
    first.add(9.0)
    assert second.state_fields() == live.state_fields()
    assert first.state_fields() == _sketch([0.5, 2.0, 2.0, 9.0]).state_fields()


@given(minutes, minutes, st.booleans())
def test_live_fields_merge_into_a_live_sketch_as_the_sketch_itself(
        mine: list[float], theirs: list[float], encoded: bool) -> None:
    sketch = _sketch(mine)
    sent = _sketch(theirs)
    sketch.merge_live_parts(*(sent.state_fields() if encoded else sent.live_fields()))
    both = _sketch(mine)
    both.merge(_sketch(theirs))
    assert sketch.state_fields() == both.state_fields() == _sketch(mine + theirs).state_fields()
    assert sketch.quantile(0.9) == both.quantile(0.9)
