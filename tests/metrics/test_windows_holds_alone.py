"""`SeriesWindows.holds_alone` (views of the minute just closed are its bucket when it holds
true): exactly whether the intervals `runs` lists for the view hold that minute's blob and no
other, through minute, hour and day rollups, read from the rings' offsets alone."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.bucket import MINUTE_NS, Bucket
from metrics.shard import _read_runs
from metrics.windows import DAY_NS, HOUR_NS, SeriesWindows, WindowConfig
from tests.metrics.strategies import T0

KEY = (("service", "checkout"),)
OVERS = tuple(timedelta(seconds=s) for s in (30, 60, 90, 300, 3600, 3660, 7200, 86400, 172800))


def _runs_alone(windows: SeriesWindows, minute: int, blob: bytes, over: timedelta) -> bool:
    """The definition: the view's intervals holding data are that minute's, holding `blob`."""
    end = minute + MINUTE_NS
    if windows.closed_until_unix_ns != end:
        return False
    packed, _, held = _read_runs(windows.runs(over, end)[2])
    return held == [(MINUTE_NS, minute)] and packed == [blob]


def _bucket(requests: int) -> Bucket:
    bucket = Bucket()
    bucket.spans_llm = requests
    return bucket


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30 * 60), min_size=1, max_size=10, unique=True),
       st.sampled_from([0, 12]), st.integers(0, 59))
def test_holds_alone_is_whether_the_view_reads_that_minute_alone(
        minutes: list[int], spread: int, offset: int) -> None:
    config = WindowConfig(rollup_spread=timedelta(minutes=spread), retire_after=timedelta(days=3))
    windows = SeriesWindows(KEY, config)
    start = T0 + offset * MINUTE_NS  # (T0 starts a day: rollups of hours and days line up)
    for index, at in enumerate(sorted(minutes)):
        windows.add_partial(start + at * MINUTE_NS, _bucket(index + 1))
    checked = alone = 0
    last = start + max(minutes) * MINUTE_NS
    # Minute by minute around the data, then in steps (an hour, a day later) past it.
    ends = [*range(start + MINUTE_NS, last + 2 * MINUTE_NS, MINUTE_NS), last + HOUR_NS,
            last + DAY_NS]
    for end in ends:
        for closed in windows.close_until(end):
            if closed.packed is None:
                continue
            minute = closed.minute_start_unix_ns
            for over in OVERS:
                expected = _runs_alone(windows, minute, closed.packed, over)
                assert windows.holds_alone(minute, closed.packed, over) is expected
                assert not windows.holds_alone(minute, closed.packed + b"\0", over)
                checked += 1
                alone += expected
    assert checked and alone  # (every series' first minute is alone in its views)


def test_a_minute_is_not_alone_once_the_closed_edge_moves_on() -> None:
    windows = SeriesWindows(KEY, WindowConfig())
    windows.add_partial(T0, _bucket(3))
    closed = windows.close_until(T0 + MINUTE_NS)
    assert closed[0].packed is not None
    assert windows.holds_alone(T0, closed[0].packed, timedelta(hours=1))
    windows.close_until(T0 + 2 * MINUTE_NS)
    assert not windows.holds_alone(T0, closed[0].packed, timedelta(hours=1))
    assert not windows.holds_alone(T0 + MINUTE_NS, closed[0].packed, timedelta(hours=1))
