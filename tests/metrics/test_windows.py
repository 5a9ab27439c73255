"""Series windows: explicit empty minutes, retirement, rollup views and state."""

from __future__ import annotations

import dataclasses
import pickle
import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan, TraceContext
from metrics.bucket import MINUTE_NS, Bucket, event_unix_ns, minute_of
from metrics.bucket_state import BucketState
from metrics.windows import DAY_NS, HOUR_NS, ClosedMinute, SeriesWindows, WindowConfig
from tests.metrics.strategies import T0, Record, records

KEY = (("service", "checkout"),)
UNTIMED = ("late_folded", "too_late", "sessions_closed", "sessions_unpriced",
           "sessions_closed_early", "session_cost_sum_pusd", "session_cost_max_pusd")


def records_only(state: BucketState) -> BucketState:
    """The state without what depends on arrival and closing (lateness, sessions)."""
    zeros: dict[str, Any] = dict.fromkeys(UNTIMED, 0)
    return dataclasses.replace(state, **zeros)


def _span(end: int, trace: str = "t") -> LLMSpan:
    return LLMSpan(trace_id=trace, span_id="s", parent_span_id=None, kind="llm", name="chat",
                   start_unix_ns=end - 10**9, end_unix_ns=end,
                   context=TraceContext(service="checkout"), cost_usd=0.01)


def _bucket(recs: list[Record]) -> Bucket:
    bucket = Bucket()
    for record in recs:
        bucket.fold(record)
    return bucket


def test_a_long_call_lands_in_the_minute_it_ended() -> None:
    windows = SeriesWindows(KEY)
    span = dataclasses.replace(_span(T0 + 3 * MINUTE_NS + 5), start_unix_ns=T0)
    windows.add(span)
    assert windows.open_minutes == (T0 + 3 * MINUTE_NS,)


def test_live_series_get_explicit_empty_minutes_then_retire() -> None:
    config = WindowConfig(retire_after=timedelta(hours=1))
    windows = SeriesWindows(KEY, config)
    windows.add(_span(T0 + 10 * 10**9))
    windows.add(_span(T0 + 5 * MINUTE_NS + 10 * 10**9))
    closed = windows.close_until(T0 + 3 * HOUR_NS)
    starts = [c.minute_start_unix_ns for c in closed]
    # every minute from the first record until retire_after past the last one, no gaps
    last_live = T0 + 5 * MINUTE_NS + 10 * 10**9 + HOUR_NS - MINUTE_NS
    assert starts == list(range(T0, minute_of(last_live) + 1, MINUTE_NS))
    assert [c.is_empty for c in closed].count(False) == 2
    assert windows.is_retired
    assert windows.is_idle_since(T0 + 6 * MINUTE_NS)
    assert not windows.is_idle_since(T0 + 5 * MINUTE_NS)


def test_a_retired_series_that_speaks_again_resumes() -> None:
    windows = SeriesWindows(KEY, WindowConfig(retire_after=timedelta(hours=1)))
    windows.add(_span(T0))
    windows.close_until(T0 + 3 * HOUR_NS)
    assert windows.is_retired
    windows.add(_span(T0 + 4 * HOUR_NS))
    closed = windows.close_until(T0 + 4 * HOUR_NS + 2 * MINUTE_NS)
    assert [c.minute_start_unix_ns - T0 for c in closed] == [4 * HOUR_NS, 4 * HOUR_NS
                                                            + MINUTE_NS]
    assert not windows.is_retired


def test_too_late_records_are_counted_in_the_next_closed_minute() -> None:
    windows = SeriesWindows(KEY)
    windows.add(_span(T0 + 10))
    windows.close_until(T0 + MINUTE_NS)
    assert windows.add(_span(T0 + 20)) == "too_late"
    [closed] = windows.close_until(T0 + 2 * MINUTE_NS)
    assert closed.bucket.too_late == 1 and closed.bucket.records == 0
    assert not closed.is_empty


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[Record], list[Record], list[int]]:
    """Records, their arrival order (out of order by up to 5 minutes) and watermarks."""
    recs = draw(records(span_ns=20 * MINUTE_NS, max_size=80))
    rnd = draw(st.randoms(use_true_random=False))
    delays = [rnd.randrange(5 * MINUTE_NS) for _ in recs]
    order = sorted(range(len(recs)), key=lambda i: event_unix_ns(recs[i]) + delays[i])
    arrived = [recs[i] for i in order]
    lag = [rnd.choice([None, rnd.randrange(3 * MINUTE_NS)]) for _ in arrived]
    return recs, arrived, [-1 if x is None else x for x in lag]


@settings(max_examples=120, deadline=None)
@given(arrivals())
def test_every_record_is_folded_once_or_counted_late(
        case: tuple[list[Record], list[Record], list[int]]) -> None:
    _, arrived, lags = case
    windows = SeriesWindows(KEY)
    verdicts: list[tuple[Record, str]] = []
    closed: list[ClosedMinute] = []
    watermark: int | None = None
    highest = T0
    for record, lag in zip(arrived, lags, strict=True):
        verdicts.append((record, windows.add(record, watermark)))
        highest = max(highest, event_unix_ns(record))
        if lag >= 0:
            watermark = max(watermark or 0, highest - lag)
            closed += windows.close_until(watermark)
    closed += windows.close_until(T0 + DAY_NS)
    folded = [r for r, v in verdicts if v != "too_late"]
    assert sum(c.bucket.records for c in closed) == len(folded)
    assert sum(c.bucket.too_late for c in closed) == sum(v == "too_late" for _, v in verdicts)
    starts = [c.minute_start_unix_ns for c in closed]
    assert starts == sorted(set(starts))  # each minute once, in order
    for c in closed:
        mine = [r for r in folded if minute_of(event_unix_ns(r)) == c.minute_start_unix_ns]
        assert records_only(c.bucket.to_state()) == records_only(_bucket(mine).to_state())
        late = [r for r, v in verdicts if v == "late_folded"
                and minute_of(event_unix_ns(r)) == c.minute_start_unix_ns]
        assert c.bucket.late_folded == len(late)


def _drive(windows: SeriesWindows, recs: list[Record], rnd: random.Random) -> list[ClosedMinute]:
    """Add records in event order, closing up to a random point behind each one."""
    closed: list[ClosedMinute] = []
    for record in sorted(recs, key=event_unix_ns):
        at = event_unix_ns(record)
        if rnd.random() < 0.5:
            closed += windows.close_until(at - rnd.randrange(2 * HOUR_NS))
        assert windows.add(record) == "on_time"
    return closed


VIEWS = [timedelta(minutes=5), timedelta(minutes=60), timedelta(minutes=97),
         timedelta(hours=6), timedelta(days=1), timedelta(days=2), timedelta(days=7)]


@settings(max_examples=15, deadline=None)
@given(records(span_ns=9 * DAY_NS, min_size=40, max_size=120, sessions=False)
       | records(span_ns=9 * DAY_NS, max_size=3, sessions=False),
       st.sampled_from([timedelta(hours=2), timedelta(days=10)]),
       st.sampled_from([timedelta(0), timedelta(minutes=12)]),
       st.integers(0, 3 * HOUR_NS), st.randoms(use_true_random=False))
def test_views_equal_one_bucket_of_every_record_they_cover(
        recs: list[Record], retire_after: timedelta, spread: timedelta, tail: int,
        rnd: random.Random) -> None:
    config = WindowConfig(retire_after=retire_after, rollup_spread=spread)
    windows = SeriesWindows(KEY, config)
    _drive(windows, recs, rnd)
    end = T0 + 9 * DAY_NS + tail
    windows.close_until(end)
    for over in VIEWS:
        start, covered_end = windows.covered(over, end)
        assert covered_end == minute_of(end)
        shortfall = (covered_end - start) - over // timedelta(microseconds=1) * 1000
        allowed = 0 if over <= timedelta(hours=1) else HOUR_NS if over <= timedelta(days=1) \
            else DAY_NS
        # Past the allowed shortfall the rings do not reach back because the series did not
        # exist yet (or never stored a minute): then no record may fall in the gap.
        over_ns = over // timedelta(microseconds=1) * 1000
        gap = [r for r in recs if covered_end - over_ns <= event_unix_ns(r) < start]
        assert shortfall <= 0, (over, shortfall)
        assert -allowed < shortfall or shortfall == allowed == 0 or not gap, (over, shortfall)
        inside = [r for r in recs if start <= event_unix_ns(r) < covered_end]
        view = windows.view(over, end)
        assert view.to_state() == _bucket(inside).to_state(), over


@settings(max_examples=30, deadline=None)
@given(records(span_ns=3 * HOUR_NS, max_size=80), st.integers(0, 79),
       st.randoms(use_true_random=False))
def test_snapshot_restore_continues_exactly(recs: list[Record], cut: int,
                                            rnd: random.Random) -> None:
    ordered = sorted(recs, key=event_unix_ns)
    original = SeriesWindows(KEY)
    _drive(original, ordered[:cut], random.Random(1))
    recovered = pickle.loads(pickle.dumps(original.snapshot()))  # noqa: S301  # as Bytewax
    restored = SeriesWindows.restore(recovered)
    seed = rnd.randrange(10**6)
    a = _drive(original, ordered[cut:], random.Random(seed))
    b = _drive(restored, ordered[cut:], random.Random(seed))
    a += original.close_until(T0 + 8 * HOUR_NS)
    b += restored.close_until(T0 + 8 * HOUR_NS)
    assert [(c.minute_start_unix_ns, c.bucket.to_state()) for c in a] == \
        [(c.minute_start_unix_ns, c.bucket.to_state()) for c in b]
    assert original.snapshot() == restored.snapshot()
    end = T0 + 8 * HOUR_NS
    assert original.view(timedelta(hours=5), end) == restored.view(timedelta(hours=5), end)


def test_memory_is_bounded_by_the_rings_whatever_the_traffic() -> None:
    windows = SeriesWindows(KEY, WindowConfig(retire_after=timedelta(days=30)))
    for minute in range(0, 12 * 24 * 60, 7):  # 12 days, a span every 7 minutes
        windows.add(_span(T0 + minute * MINUTE_NS, trace=f"t{minute}"))
        windows.close_until(T0 + minute * MINUTE_NS)
    state = windows.snapshot()
    assert len(state.minutes.entries) <= 72 and len(state.hours.entries) <= 26
    assert len(state.days.entries) <= 8 and len(state.open) <= 1


def test_config_is_validated_with_the_allowed_range() -> None:
    with pytest.raises(ValueError, match=r"WindowConfig.minute_slots = 60 is out of range; "
                                         r"expected >= 72"):
        WindowConfig(minute_slots=60)
    with pytest.raises(ValueError, match="retire_after"):
        WindowConfig(retire_after=timedelta(minutes=10))
