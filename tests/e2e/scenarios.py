"""The traffic of the end-to-end tests: one scenario with an incident per service (so one run of
`spanwatch run` covers them all), and a quiet one with the same services behaving normally."""

from __future__ import annotations

import time
from dataclasses import replace

from tests.e2e.traffic import MINUTE_NS, Behaviour, Phase, Scenario, Service

MINUTES = 170
CHANGE_AT = 120
"""Minute of the prompt version change, the quality drop and the error burst."""
BURST = (CHANGE_AT + 10, CHANGE_AT + 20)
UNSAFE_AT = CHANGE_AT + 25
END_MARKERS = (6, 10)
"""Minutes after the end with one marker request each: the second closes the first's minute,
whose `END_RULE` transition tells the test the flow is through (a gap under the 10 minutes
`request-rate-anomaly` needs to call missing traffic an anomaly)."""
COMPRESS = {
    # Hours of traffic instead of days: the detector rules the scenario exercises learn their
    # baseline over 2 hours (the shipped 1 day / 7 days need days of warm-up).
    "cost-per-request-spike": ('baseline = "1d"', 'baseline = "2h"'),
    "quality-score-drop": ('baseline = "7d"', 'baseline = "2h", warmup = "1h"'),
}

COST = Service("support-bot", 3, (0, MINUTES), phases=(Phase(CHANGE_AT, {
    "prompt_version": "v2", "input_tokens": 2600, "output_tokens": 650}),))
QUALITY = Service("search-assistant", 20, (40, MINUTES), endpoint="/search",
                  normal=Behaviour(quality=0.85),
                  phases=(Phase(CHANGE_AT, {"quality": 0.72}),))
ERRORS = Service("checkout-bot", 12, (CHANGE_AT - 30, MINUTES), model="claude-3-5-haiku",
                 provider="anthropic", endpoint="/checkout",
                 phases=(Phase(BURST[0], {"error_share": 0.4}),
                         Phase(BURST[1], {"error_share": 0.0})))
SAFETY = Service("tutor-bot", 2, (CHANGE_AT - 20, MINUTES), endpoint="/tutor",
                 normal=Behaviour(safety=True), unsafe_at=(UNSAFE_AT,))
SLOW = Service("docs-bot", 2, (0, MINUTES), endpoint="/docs", normal=Behaviour(ttft_s=0.9))


def _start(hours_ago: int) -> int:
    """A whole minute `hours_ago` hours back: event time in the past, within the digest's day."""
    now = time.time_ns()
    return now - now % MINUTE_NS - hours_ago * 60 * MINUTE_NS


def incidents() -> Scenario:
    return Scenario(_start(5), MINUTES, (COST, QUALITY, ERRORS, SAFETY, SLOW))


def quiet() -> Scenario:
    """The same services without their incidents (and TTFT within target)."""
    calm = tuple(replace(s, phases=(), unsafe_at=(), normal=replace(s.normal, ttft_s=0.3))
                 for s in (COST, QUALITY, ERRORS, SAFETY, SLOW))
    return Scenario(_start(5), MINUTES, calm)
