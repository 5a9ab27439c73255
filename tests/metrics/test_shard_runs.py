"""`SeriesWindows.runs` and the shard's run helpers read exactly what reading every slot of
`SeriesWindows.slots` one by one reads: the same blobs at the same positions, and plans that
extend one another (`_is_prefix`) exactly when their slots do."""

from __future__ import annotations

import random
from datetime import timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.bucket import MINUTE_NS, event_unix_ns
from metrics.shard import ShardWindows, _is_prefix, _read_runs, _size
from metrics.windows import DAY_NS, HOUR_NS, WindowConfig
from tests.metrics.strategies import T0, Record, records
from tests.metrics.test_shard_views import _moved

KEY = (("service", "checkout"),)
CONFIG = WindowConfig(retire_after=timedelta(days=10))
SPAN = 3 * DAY_NS
END = T0 + SPAN + 2 * HOUR_NS + 17 * MINUTE_NS
OVERS = [timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6),
         timedelta(days=1), timedelta(days=2)]
ENDS = [END, END - 7 * MINUTE_NS, END - 77 * MINUTE_NS, END - 5 * HOUR_NS]


@settings(max_examples=10, deadline=None)
@given(records(span_ns=HOUR_NS, min_size=5, max_size=60), st.randoms(use_true_random=False))
def test_runs_read_what_every_slot_reads(recs: list[Record], rnd: random.Random) -> None:
    # Sparse data over 3 days: views mix day, hour and minute slots, most of them empty.
    shard = ShardWindows(CONFIG)
    moved = [_moved(r, T0 + rnd.randrange(SPAN)) for r in recs]
    for record in sorted(moved, key=event_unix_ns):
        shard.add(KEY, record)
    shard.close_until(END)
    windows = shard.get(KEY)
    assert windows is not None
    plans = []
    units: set[int] = set()
    for over in OVERS:
        for end in ENDS:
            start, stop, runs = windows.runs(over, end)
            assert (start, stop) == windows.slots(over, end)[:2]
            slots = windows.slots(over, end)[2]
            assert _size(runs) == len(slots)
            reference = [(position, blob, (ring.unit_ns, at))
                         for position, (ring, at) in enumerate(slots)
                         if (blob := ring.get(at)) is not None]
            packed, positions, held = _read_runs(runs)
            assert list(zip(positions, packed, held, strict=True)) == reference
            for (ring, low, _), (following, _, high) in pairwise(runs):
                assert not (ring is following and low == high)  # as long as they can be
            units.update(ring.unit_ns for ring, _ in slots)
            plans.append((runs, slots))
    assert len(units) == 3  # day, hour and minute slots were all exercised
    extends = 0
    for runs, slots in plans:
        for other_runs, other_slots in plans:
            prefix = slots == other_slots[:len(slots)]
            assert _is_prefix(runs, other_runs) == prefix
            extends += prefix and len(slots) < len(other_slots)
    assert extends  # some plans extend others
