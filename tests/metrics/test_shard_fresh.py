"""Views of the minute `ShardWindows.close_until` just closed (`ClosedMinute.packed`): when
they merge that minute alone they are its bucket, and they read exactly like views merged
from the rings; pickled shards hold no trace of them."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings

from ingest.span import LLMSpan
from metrics.bucket import MINUTE_NS, event_unix_ns
from metrics.catalog import METRICS
from metrics.shard import PARTS, ShardWindows
from metrics.windows import WindowConfig
from tests.metrics.strategies import T0, Record, records
from tests.metrics.view_reads import read_view

KEY = (("service", "checkout"),)
CONFIG = WindowConfig(retire_after=timedelta(days=10))
OVERS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1), timedelta(days=1))


def _at(record: Record, at: int) -> Record:
    if isinstance(record, LLMSpan):
        shift = at - record.end_unix_ns
        return replace(record, start_unix_ns=record.start_unix_ns + shift, end_unix_ns=at)
    return replace(record, at_unix_ns=at)


def _shard(recs: list[Record], minutes: list[int]) -> ShardWindows:
    """Records spread over the given minutes (from T0), each minute closed as it ends."""
    shard = ShardWindows(CONFIG)
    for index, record in enumerate(sorted(recs, key=event_unix_ns)):
        minute = T0 + minutes[index % len(minutes)] * MINUTE_NS
        shard.add(KEY, _at(record, minute + 1_000))
    return shard


def _reads(shard: ShardWindows, end: int) -> list[object]:
    views = shard.views_parts(KEY, [(over, end, PARTS) for over in OVERS])
    return [read_view(view, over, sorted(METRICS)) for view, over in zip(views, OVERS,
                                                                          strict=True)]


def _merged_reads(shard: ShardWindows, end: int) -> list[object]:
    """The same views merged from the rings (a restored shard has no closed minute at hand)."""
    return _reads(ShardWindows.restore(shard.snapshot(), CONFIG), end)


@settings(max_examples=15, deadline=None)
@given(records(min_size=1, max_size=30))
def test_views_of_a_series_first_minute_are_its_bucket(recs: list[Record]) -> None:
    shard = _shard(recs, [0])
    closed = shard.close_until(T0 + MINUTE_NS)
    assert [c.minute_start_unix_ns for c in closed] == [T0]
    minute = closed[0]
    assert minute.packed is not None
    views = shard.views_parts(KEY, [(over, T0 + MINUTE_NS, PARTS) for over in OVERS])
    assert all(view is minute.bucket for view in views)
    assert _reads(shard, T0 + MINUTE_NS) == _merged_reads(shard, T0 + MINUTE_NS)


@settings(max_examples=15, deadline=None)
@given(records(min_size=2, max_size=30))
def test_views_with_older_minutes_are_merged_as_before(recs: list[Record]) -> None:
    shard = _shard(recs, [0, 3])
    shard.close_until(T0 + 2 * MINUTE_NS)
    closed = shard.close_until(T0 + 4 * MINUTE_NS)
    fresh = [c for c in closed if c.packed is not None]
    assert [c.minute_start_unix_ns for c in fresh] == [T0 + 3 * MINUTE_NS]
    views = shard.views_parts(KEY, [(over, T0 + 4 * MINUTE_NS, PARTS) for over in OVERS])
    # the 1 m view is the minute alone, but the others hold minute 0 too: all merged
    assert all(view is not fresh[0].bucket for view in views)
    assert _reads(shard, T0 + 4 * MINUTE_NS) == _merged_reads(shard, T0 + 4 * MINUTE_NS)


@settings(max_examples=10, deadline=None)
@given(records(min_size=1, max_size=20))
def test_a_later_empty_minute_is_not_taken_for_the_fresh_one(recs: list[Record]) -> None:
    shard = _shard(recs, [0])
    closed = shard.close_until(T0 + 3 * MINUTE_NS)  # minute 0 with data, 1 and 2 empty
    assert [c.minute_start_unix_ns for c in closed if c.packed is not None] == [T0]
    for end in (T0 + MINUTE_NS, T0 + 3 * MINUTE_NS):
        assert _reads(shard, end) == _merged_reads(shard, end)
    one_minute = shard.views_parts(KEY, [(timedelta(minutes=1), T0 + 3 * MINUTE_NS, PARTS)])
    assert one_minute[0] is not None
    assert one_minute[0].is_empty


@settings(max_examples=10, deadline=None)
@given(records(min_size=1, max_size=20))
def test_a_minute_closed_by_another_shard_is_never_taken(recs: list[Record]) -> None:
    shard = _shard(recs, [0])
    minute = shard.close_until(T0 + MINUTE_NS)[0]
    assert minute.packed is not None
    # The same series and minute, closed elsewhere with other data: another blob.
    stranger = replace(minute, packed=minute.packed + b"\0")
    shard._fresh = {KEY: stranger}  # what the blob check guards against
    views = shard.views_parts(KEY, [(over, T0 + MINUTE_NS, PARTS) for over in OVERS])
    assert all(view is not stranger.bucket for view in views)
    assert _reads(shard, T0 + MINUTE_NS) == _merged_reads(shard, T0 + MINUTE_NS)


@settings(max_examples=10, deadline=None)
@given(records(min_size=1, max_size=20))
def test_pickled_shards_hold_no_closed_minute(recs: list[Record]) -> None:
    shard = _shard(recs, [0, 1])
    shard.close_until(T0 + MINUTE_NS)
    plain = _shard(recs, [0, 1])
    plain.close_until(T0 + MINUTE_NS)
    plain._fresh = {}  # the state before any view could read it
    assert b"ClosedMinute" not in pickle.dumps(shard)
    assert pickle.dumps(shard) == pickle.dumps(plain)
    restored = pickle.loads(pickle.dumps(shard))  # noqa: S301 - ours
    assert restored._fresh == {}
    assert restored.snapshot() == shard.snapshot()
    assert _reads(restored, T0 + MINUTE_NS) == _reads(shard, T0 + MINUTE_NS)
