"""Closing skips silent minutes up to the next session deadline; a lower bound of it (no scan
of the open sessions) must close exactly the same minutes as the exact deadline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.bucket import MINUTE_NS
from metrics.sessions import SessionTracker
from metrics.windows import HOUR_NS, SeriesWindows, WindowConfig
from tests.metrics.strategies import T0, Record, records


def _closed(recs: list[Record], closes: list[int], config: WindowConfig
            ) -> list[tuple[int, bytes]]:
    windows = SeriesWindows((("service", "checkout"),), config)
    out: list[tuple[int, bytes]] = []
    ordered = sorted(recs, key=lambda r: getattr(r, "end_unix_ns", getattr(r, "at_unix_ns", 0)))
    for step, record in enumerate(ordered):
        windows.add(record)
        if step < len(closes):
            out += [(c.minute_start_unix_ns, c.bucket.pack())
                    for c in windows.close_until(T0 + closes[step] * MINUTE_NS)]
    out += [(c.minute_start_unix_ns, c.bucket.pack())
            for c in windows.close_until(T0 + 20 * HOUR_NS)]
    return out


@settings(max_examples=60, deadline=None)
@given(records(span_ns=6 * HOUR_NS, min_size=1, max_size=40),
       st.lists(st.integers(0, 8 * 60), max_size=40),
       st.sampled_from([timedelta(minutes=1), timedelta(minutes=30), timedelta(hours=2)]),
       st.sampled_from([1, 3, 1000]))
def test_closing_with_the_deadline_bound_equals_the_exact_deadline(
        recs: list[Record], closes: list[int], idle: timedelta, max_open: int) -> None:
    config = WindowConfig(retire_after=idle + timedelta(minutes=20), session_idle_timeout=idle,
                          max_open_sessions=max_open)
    with_bound = _closed(recs, closes, config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SessionTracker, "deadline_bound_unix_ns",
                      SessionTracker.next_deadline_unix_ns)
        exact = _closed(recs, closes, config)
    assert with_bound == exact
