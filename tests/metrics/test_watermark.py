"""The watermark over skewed, lagging and idle partitions, and late-record accounting."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.watermark import LateCounter, Watermark, lateness

S = 10**9
MIN = 60 * S
LATENESS = timedelta(seconds=30)
IDLE = timedelta(minutes=2)
T0 = 1_699_920_000 * S


def _watermark(partitions: tuple[str, ...] = ("p0", "p1", "p2", "p3")) -> Watermark:
    return Watermark(partitions, allowed_lateness=LATENESS, idle_timeout=IDLE,
                     started_wall_unix_ns=T0)


def test_none_until_every_partition_reported() -> None:
    wm = _watermark()
    for i, p in enumerate(("p0", "p1", "p2")):
        wm.observe(p, T0 + i * MIN, wall_unix_ns=T0 + S)
    assert wm.current(T0 + S) is None
    wm.observe("p3", T0 + 5 * MIN, wall_unix_ns=T0 + 2 * S)
    assert wm.current(T0 + 2 * S) == T0 - 30 * S  # min over partitions minus the lateness


def test_skewed_partitions_and_a_lagging_one_holds_it_back() -> None:
    wm = _watermark()
    wall = T0
    for step in range(10):
        wall = T0 + step * 10 * S
        for i, p in enumerate(("p0", "p1", "p2")):
            wm.observe(p, wall + i * MIN, wall)  # skewed by minutes, all progressing
        wm.observe("p3", T0 - 5 * MIN + step * S, wall)  # lagging 5 min, slowly
        assert wm.current(wall) == T0 - 5 * MIN + step * S - 30 * S


def test_an_idle_partition_is_left_out_after_the_timeout() -> None:
    wm = _watermark()
    for p in ("p0", "p1", "p2", "p3"):
        wm.observe(p, T0, T0)
    wm.observe("p3", T0 - 10 * MIN, T0)  # no progress: p3 stays at T0
    for step in range(1, 20):
        wall = T0 + step * 10 * S
        for p in ("p0", "p1", "p2"):
            wm.observe(p, wall, wall)
        expected = wall - 30 * S if step * 10 * S >= 120 * S else T0 - 30 * S
        assert wm.current(wall) == expected, step
    assert wm.idle_partitions(T0 + 190 * S) == frozenset({"p3"})


def test_a_partition_that_never_reports_times_out() -> None:
    wm = _watermark(("p0", "p1"))
    wm.observe("p0", T0, T0)
    assert wm.current(T0 + 119 * S) is None
    assert wm.current(T0 + 120 * S) == T0 - 30 * S


def test_a_new_partition_holds_the_watermark_until_it_reports() -> None:
    wm = _watermark(("p0",))
    wm.observe("p0", T0, T0)
    assert wm.current(T0) == T0 - 30 * S
    wm.expect("p1", T0)
    wm.observe("p0", T0 + MIN, T0 + S)
    assert wm.current(T0 + S) == T0 - 30 * S
    wm.observe("p1", T0 + 2 * MIN, T0 + 2 * S)
    assert wm.current(T0 + 2 * S) == T0 + MIN - 30 * S


def test_when_all_partitions_are_idle_event_time_follows_the_wall_clock() -> None:
    wm = _watermark(("p0", "p1"))
    wm.observe("p0", T0, T0)
    wm.observe("p1", T0 - MIN, T0)
    assert wm.current(T0) == T0 - MIN - 30 * S
    # traffic stops; after the idle timeout minutes keep closing at wall speed
    assert wm.current(T0 + 10 * MIN) == T0 + 8 * MIN - 30 * S


@given(st.lists(st.tuples(st.sampled_from(["p0", "p1", "p2", "p3"]),
                          st.integers(-10 * MIN, 10 * MIN), st.integers(0, 5 * MIN)),
                max_size=60))
def test_never_decreases(events: list[tuple[str, int, int]]) -> None:
    wm = _watermark()
    last = None
    wall = T0
    for partition, offset, pause in events:
        wall += pause
        wm.observe(partition, T0 + offset, wall)
        now = wm.current(wall)
        assert last is None or (now is not None and now >= last)
        last = now


def test_snapshot_restore() -> None:
    wm = _watermark()
    for i, p in enumerate(("p0", "p1", "p2", "p3")):
        wm.observe(p, T0 + i * MIN, T0)
    restored = Watermark.restore(wm.snapshot(), allowed_lateness=LATENESS, idle_timeout=IDLE)
    assert restored.current(T0 + S) == wm.current(T0 + S)
    assert restored.snapshot() == wm.snapshot()


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="allowed_lateness must be >= 0"):
        Watermark((), allowed_lateness=timedelta(seconds=-1), idle_timeout=IDLE,
                  started_wall_unix_ns=0)


def test_lateness_verdicts_are_counted_by_reason() -> None:
    counter = LateCounter()
    closed_until, watermark = T0, T0 + 30 * S
    assert counter.classify(T0 + MIN, closed_until, watermark_unix_ns=watermark) == "on_time"
    assert counter.classify(T0 + 10 * S, closed_until,
                            watermark_unix_ns=watermark) == "late_folded"
    assert counter.classify(T0 - 1, closed_until, watermark_unix_ns=watermark,
                            records=3) == "too_late"
    assert counter.counts == {"on_time": 1, "late_folded": 1, "too_late": 3}
    assert LateCounter.restore(counter.snapshot()).counts == counter.counts
    assert lateness(T0, None, None) == "on_time"
