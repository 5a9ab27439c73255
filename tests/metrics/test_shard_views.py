"""`ShardWindows.views_parts` / `partial_views`: views that merge the same blobs share one
bucket holding every part asked for, and each still reads like its full view."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan
from metrics.bucket import MINUTE_NS, event_unix_ns
from metrics.bucket_state import unpack_fields
from metrics.catalog import METRICS, reads
from metrics.shard import PARTS, ShardWindows, partial_view, partial_views
from metrics.windows import HOUR_NS, WindowConfig
from tests.metrics.strategies import T0, Record, records
from tests.metrics.view_reads import read_view

KEY = (("service", "checkout"),)
CONFIG = WindowConfig(retire_after=timedelta(days=10))
END = T0 + 2 * HOUR_NS


def _shard(recs: list[Record], start: int, span_ns: int) -> ShardWindows:
    """Records moved into [start, start + span_ns), closed up to `END`."""
    shard = ShardWindows(CONFIG)
    for record in sorted(recs, key=event_unix_ns):
        shard.add(KEY, _moved(record, start + (event_unix_ns(record) - T0) % span_ns))
    shard.close_until(END)
    return shard


def _moved(record: Record, at: int) -> Record:
    if isinstance(record, LLMSpan):
        shift = at - record.end_unix_ns
        return replace(record, start_unix_ns=record.start_unix_ns + shift, end_unix_ns=at)
    return replace(record, at_unix_ns=at)


@settings(max_examples=15, deadline=None)
@given(records(span_ns=HOUR_NS, min_size=5, max_size=40), st.sampled_from(sorted(METRICS)),
       st.sampled_from(sorted(METRICS)))
def test_views_over_the_same_blobs_share_one_bucket_with_every_part(
        recs: list[Record], first: str, second: str) -> None:
    # All data in the last 3 minutes: a 5 m and a 1 h view merge the same blobs.
    shard = _shard(recs, END - 3 * MINUTE_NS, 3 * MINUTE_NS)
    short, long = timedelta(minutes=5), timedelta(hours=1)
    views = shard.views_parts(KEY, [(short, END, reads(first)), (long, END, reads(second))])
    assert views[0] is views[1]
    assert read_view(views[0], short, [first]) == read_view(shard.view(KEY, short, END), short,
                                                            [first])
    assert read_view(views[1], long, [second]) == read_view(shard.view(KEY, long, END), long,
                                                            [second])


@settings(max_examples=15, deadline=None)
@given(records(span_ns=HOUR_NS, min_size=5, max_size=40), st.sampled_from(sorted(METRICS)))
def test_views_over_other_blobs_get_their_own_buckets(recs: list[Record], metric: str) -> None:
    # Data spread over the last 40 minutes: the 1 h view holds blobs the 5 m view does not
    # (unless hypothesis put every record in the last 5 minutes).
    shard = _shard(recs, END - 40 * MINUTE_NS, 40 * MINUTE_NS)
    short, long = timedelta(minutes=5), timedelta(hours=1)
    views = shard.views_parts(KEY, [(short, END, reads(metric)), (long, END, reads(metric))])
    full = [shard.view(KEY, over, END) for over in (short, long)]
    assert full[0] is not None and full[1] is not None
    if full[0].records != full[1].records:
        assert views[0] is not views[1]
        assert views[0] is not None and views[1] is not None
        assert views[0].exemplars is not views[1].exemplars
    for over, view, whole in zip((short, long), views, full, strict=True):
        assert read_view(view, over, [metric]) == read_view(whole, over, [metric])


@settings(max_examples=20, deadline=None)
@given(records(span_ns=10 * MINUTE_NS, min_size=3, max_size=40),
       st.lists(st.tuples(st.integers(0, 10), st.sampled_from(sorted(METRICS))),
                min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_partial_views_cuts_of_one_length_share_a_bucket(
        recs: list[Record], cuts: list[tuple[int, str]], rnd: random.Random) -> None:
    shard = _shard(recs, END - 10 * MINUTE_NS, 10 * MINUTE_NS)
    windows = shard.get(KEY)
    assert windows is not None
    blobs = [ring.get(at) for ring, at in reversed(windows.slots(timedelta(minutes=10), END)[2])]
    fields = [unpack_fields(blob) for blob in blobs if blob is not None]
    wanted = [(min(n, len(fields)), reads(metric)) for n, metric in cuts]
    rnd.shuffle(wanted)
    together = partial_views(fields, wanted)
    over = timedelta(minutes=10)
    for (n, parts), bucket in zip(wanted, together, strict=True):
        # Each reads like a view of its own parts alone, whatever else it shares.
        readable = [m for m in METRICS if reads(m) <= parts]
        assert read_view(bucket, over, readable) == read_view(partial_view(fields[:n], parts), over,
                                                      readable)
    for i, (n, _) in enumerate(wanted):
        for j, (m, _) in enumerate(wanted):
            assert (together[i] is together[j]) == (n == m)
    # A shared bucket holds every part its cuts asked for: what any of them reads.
    union = partial_views(fields, [(len(fields), PARTS), (len(fields), frozenset())])
    assert union[0] is union[1]
    assert read_view(union[1], over, list(METRICS)) == read_view(partial_view(fields, PARTS), over,
                                                         list(METRICS))
