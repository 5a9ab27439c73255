"""Partial views (`ShardWindows.view_parts` / `views_parts`, `partial_view`) read like full
views for what rule evaluation uses; `SeriesWindows.slots` walks like one interval at a time;
`catalog.reads` names what each metric reads."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.bucket import MINUTE_NS, SKETCHES, Bucket, event_unix_ns
from metrics.bucket_state import fields_of
from metrics.catalog import METRICS, UnknownMetricError, reads
from metrics.shard import PARTS, ShardWindows, partial_view, partial_views
from metrics.windows import DAY_NS, HOUR_NS, SeriesWindows, WindowConfig
from tests.metrics.strategies import T0, Record, records
from tests.metrics.view_reads import read_view

KEY = (("service", "checkout"),)
CONFIG = WindowConfig(retire_after=timedelta(days=10))
OVERS = [timedelta(minutes=m) for m in (1, 5, 15, 60, 97)] + [timedelta(hours=6),
                                                             timedelta(days=1)]


def _shard(recs: list[Record], rnd: random.Random, end: int) -> ShardWindows:
    shard = ShardWindows(CONFIG)
    for record in sorted(recs, key=event_unix_ns):
        if rnd.random() < 0.3:
            shard.close_until(event_unix_ns(record) - rnd.randrange(2 * HOUR_NS))
        shard.add(KEY, record)
    shard.close_until(end)
    return shard


def _ends(end: int) -> list[int]:
    return [end, end - 7 * MINUTE_NS, end - end % HOUR_NS, end - end % DAY_NS]


@settings(max_examples=20, deadline=None)
@given(records(span_ns=2 * DAY_NS, min_size=20, max_size=100, sessions=True)
       | records(span_ns=3 * HOUR_NS, max_size=40),
       st.integers(0, 3 * HOUR_NS), st.randoms(use_true_random=False))
def test_partial_views_read_like_full_views(recs: list[Record], tail: int,
                                            rnd: random.Random) -> None:
    end = T0 + 2 * DAY_NS + tail
    shard = _shard(recs, rnd, end)
    for at in _ends(end):
        for over in OVERS:
            full = shard.view(KEY, over, at)
            assert read_view(shard.view_parts(KEY, over, at, PARTS), over, list(METRICS)) \
                == read_view(full, over, list(METRICS))
            for metric in METRICS:  # each metric from a view of only what it reads
                assert read_view(shard.view_parts(KEY, over, at, reads(metric)), over, [metric]) \
                    == read_view(full, over, [metric]), (metric, over, at)


@settings(max_examples=20, deadline=None)
@given(records(span_ns=2 * DAY_NS, min_size=20, max_size=100),
       st.lists(st.tuples(st.sampled_from(OVERS), st.integers(0, 3),
                          st.sampled_from(sorted(METRICS))), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_views_of_one_series_together_equal_each_alone(
        recs: list[Record], picks: list[tuple[timedelta, int, str]],
        rnd: random.Random) -> None:
    end = T0 + 2 * DAY_NS
    shard = _shard(recs, rnd, end)
    wanted = [(over, _ends(end)[which], reads(metric)) for over, which, metric in picks]
    together = shard.views_parts(KEY, wanted)
    for (over, at, parts), bucket, (_, _, metric) in zip(wanted, together, picks, strict=True):
        assert read_view(bucket, over, [metric]) \
            == read_view(shard.view_parts(KEY, over, at, parts), over, [metric]) \
            == read_view(shard.view(KEY, over, at), over, [metric])


def test_views_of_an_unknown_series_are_none() -> None:
    shard = ShardWindows(CONFIG)
    assert shard.views_parts(KEY, [(timedelta(minutes=5), T0, PARTS)]) == [None]
    assert shard.view_parts(KEY, timedelta(minutes=5), T0, frozenset()) is None


def test_partial_views_refuse_unknown_parts_and_state_versions() -> None:
    with pytest.raises(ValueError, match="unknown view parts"):
        partial_view([], frozenset({"cost_mix"}))
    fields = fields_of(Bucket().to_state())
    with pytest.raises(ValueError, match="version 9"):
        partial_views([(9, *fields[1:])], [(1, frozenset())])
    assert partial_view([], PARTS).is_empty


def _walk(windows: SeriesWindows, over: timedelta,
          end_unix_ns: int) -> tuple[int, int, list[tuple[int, int]]]:
    """The interval-at-a-time walk `slots` must match (the view plan as it was written)."""
    end = end_unix_ns - end_unix_ns % MINUTE_NS
    closed = windows.closed_until_unix_ns
    if closed is not None:
        end = min(end, closed)
    start = end - over // timedelta(microseconds=1) * 1000
    days, hours, minutes = windows._days, windows._hours, windows._minutes
    days_rolled, hours_rolled = windows._days_rolled, windows._hours_rolled
    ring_end = minutes.end_unix_ns
    minutes_low = (end if ring_end is None else ring_end) - minutes.size * MINUTE_NS
    out: list[tuple[int, int]] = []
    t = end
    while t > start:
        if (t % DAY_NS == 0 and t - DAY_NS >= start and days_rolled is not None
                and t <= days_rolled and days.covers(t - DAY_NS)):
            t -= DAY_NS
            out.append((DAY_NS, t))
        elif (t % HOUR_NS == 0 and t - HOUR_NS >= start and hours_rolled is not None
              and t <= hours_rolled and hours.covers(t - HOUR_NS)):
            t -= HOUR_NS
            out.append((HOUR_NS, t))
        elif t - MINUTE_NS >= start and t - MINUTE_NS >= minutes_low:
            t -= MINUTE_NS
            out.append((MINUTE_NS, t))
        else:
            break
    return t, end, out


@settings(max_examples=25, deadline=None)
@given(records(span_ns=3 * DAY_NS, max_size=60, sessions=False),
       st.lists(st.tuples(st.integers(1, 3 * 24 * 60 + 30), st.integers(0, 4 * DAY_NS)),
                min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_slots_walk_like_one_interval_at_a_time(recs: list[Record],
                                                views: list[tuple[int, int]],
                                                rnd: random.Random) -> None:
    shard = _shard(recs, rnd, T0 + 3 * DAY_NS + rnd.randrange(3 * HOUR_NS))
    windows = shard.get(KEY)
    if windows is None:
        windows = SeriesWindows(KEY, CONFIG)
    for minutes, offset in views:
        over = timedelta(minutes=minutes)
        start, end, slots = windows.slots(over, T0 + offset)
        assert (start, end, [(ring.unit_ns, at) for ring, at in slots]) \
            == _walk(windows, over, T0 + offset)
        assert windows.covered(over, T0 + offset) == (start, end)


def test_reads_name_the_parts_each_metric_reads() -> None:
    assert reads("ttft_p99") == {"ttft_s"}
    assert reads("output_tokens_per_s") == {"output_tokens_per_s"}
    assert reads("error_rate_timeout") == {"error_kinds"}
    assert reads("unknown_cost_spans") == {"unknown_cost"}
    assert reads("error_rate") == reads("request_rate") == frozenset()
    assert all(reads(metric) <= PARTS for metric in METRICS)
    assert {part for metric in METRICS for part in reads(metric)} \
        == {*SKETCHES, "error_kinds", "unknown_cost"}
    with pytest.raises(UnknownMetricError, match="did you mean"):
        reads("ttft_p999")
