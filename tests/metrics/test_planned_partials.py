"""Partials of a few records carry their plans: the window stage must end up exactly where the
folded partials (and a pickled trip across processes) take it, lateness verdicts included."""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics import partial as partial_module
from metrics.bucket import MINUTE_NS
from metrics.bucket_state import BucketState
from metrics.partial import PLANNED_MAX, preaggregate
from metrics.series import SeriesKey
from metrics.shard import ShardWindows
from metrics.windows import DAY_NS
from tests.metrics.strategies import T0, Record, records
from tests.metrics.test_shard import CONFIG, GROUP_BYS, _minutes

FAR = T0 + DAY_NS


def _batches(recs: list[Record], rnd: random.Random) -> list[list[Record]]:
    out, rest = [], recs[:]
    while rest:
        cut = rnd.randint(1, 2 * PLANNED_MAX)
        out.append(rest[:cut])
        rest = rest[cut:]
    return out


Sent = tuple[SeriesKey, int, int, BucketState]


def _feed(batches: list[list[Record]], watermarks: list[int], *,
          through_pickle: bool) -> tuple[ShardWindows, list[Sent]]:
    shard, sent = ShardWindows(CONFIG), list[Sent]()
    for batch, watermark in zip(batches, watermarks, strict=True):
        partials = preaggregate(batch, GROUP_BYS)
        if through_pickle:
            partials = pickle.loads(pickle.dumps(partials))  # noqa: S301  # our own bytes
        # What was sent, before the shard takes over (and changes) folded buckets.
        sent.extend((p.key, p.minute_start_unix_ns, p.records, p.state) for p in partials)
        for partial in partials:
            shard.add_partial(partial, watermark)
        shard.close_until(watermark - 2 * MINUTE_NS)  # some later partials are too late
    return shard, sent


@settings(max_examples=60, deadline=None)
@given(records(max_size=60), st.randoms(use_true_random=False))
def test_planned_partials_match_folded_ones(recs: list[Record], rnd: random.Random) -> None:
    batches = _batches(recs, rnd)
    watermarks = [T0 + rnd.randint(0, 30) * MINUTE_NS for _ in batches]
    planned, sent = _feed(batches, watermarks, through_pickle=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(partial_module, "PLANNED_MAX", 0)  # every partial folded
        assert all(p.folded is not None for b in batches for p in preaggregate(b, GROUP_BYS))
        folded, sent_folded = _feed(batches, watermarks, through_pickle=False)
    assert sent == sent_folded
    assert planned.late.counts == folded.late.counts
    assert _minutes(planned.close_until(FAR)) == _minutes(folded.close_until(FAR))


@given(records(min_size=1, max_size=40))
@settings(max_examples=30, deadline=None)
def test_only_small_partials_carry_plans(recs: list[Record]) -> None:
    for partial in preaggregate(recs, GROUP_BYS):
        assert (partial.folded is None) == (partial.records <= PLANNED_MAX)
        assert len(partial.plans) == (partial.records if partial.folded is None else 0)
