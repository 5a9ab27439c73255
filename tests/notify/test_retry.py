"""The shared retry helper: status decisions, Retry-After parsing, backoff with jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notify.records import Delivered, Failed, Retry
from notify.retry import RetryPolicy, StatusTable, header, parse_retry_after

TABLE = StatusTable(vendor="V", docs="https://example.invalid/docs",
                    retry_error_codes=frozenset({"ratelimited"}))
NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "decision"), [
    (200, "done"), (202, "done"), (204, "done"),
    (400, "fail"), (401, "fail"), (403, "fail"), (404, "fail"), (410, "fail"), (413, "fail"),
    (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"),
    (599, "retry"), (301, "fail"),
])
def test_status_decisions(status: int, decision: str) -> None:
    assert TABLE.decide(status) == decision


def test_a_vendor_table_can_override_a_status() -> None:
    table = StatusTable(vendor="V", docs="", retry_statuses=frozenset({409}),
                        fail_statuses=frozenset({501}))
    assert (table.decide(409), table.decide(501)) == ("retry", "fail")


def test_outcomes_quote_the_vendor_error() -> None:
    assert TABLE.outcome(202, "x") == Delivered("V answered 202")
    assert TABLE.outcome(400, "invalid event") == Failed("V answered 400: invalid event")
    assert TABLE.outcome(429, "slow down", timedelta(seconds=7)) == Retry(
        timedelta(seconds=7), "V answered 429: slow down")
    assert TABLE.error_code_outcome("ratelimited", "r") == Retry(None, "V error ratelimited: r")
    assert TABLE.error_code_outcome("channel_not_found", "c") == Failed(
        "V error channel_not_found: c")


@pytest.mark.parametrize(("value", "expected"), [
    ("7", timedelta(seconds=7)),
    (" 1.5 ", timedelta(seconds=1.5)),
    ("-3", timedelta(0)),
    ("Mon, 06 May 2024 12:00:30 GMT", timedelta(seconds=30)),
    ("Mon, 06 May 2024 11:00:00 GMT", timedelta(0)),
    ("soon", None), ("", None), (None, None),
])
def test_retry_after_takes_seconds_or_an_http_date(value: str | None,
                                                   expected: timedelta | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_headers_are_found_whatever_their_case() -> None:
    assert header({"retry-after": "3"}, "Retry-After") == "3"
    assert header({"RETRY-AFTER": ["4"]}, "Retry-After") == "4"
    assert header({}, "Retry-After") is None
    assert header(None, "Retry-After") is None


def test_backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() -> None:
    policy = RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=30))
    assert [policy.delay(n, None, 0.0).total_seconds() for n in range(1, 8)] == [
        0.5, 1, 2, 4, 8, 15, 15]
    assert [policy.delay(n, None, 0.999999).total_seconds() for n in (1, 6)] == pytest.approx(
        [1.0, 30.0], rel=1e-5)
    assert policy.delay(1000, None, 0.5) == timedelta(seconds=22.5)  # no overflow


def test_retry_after_is_honoured_exactly_without_jitter() -> None:
    policy = RetryPolicy()
    assert policy.delay(5, timedelta(seconds=42), 0.0) == timedelta(seconds=42)


def test_a_retry_past_the_deadline_gives_up() -> None:
    policy = RetryPolicy(deadline=timedelta(minutes=10))
    enqueued = NOW - timedelta(minutes=9)
    assert policy.next_attempt_at(NOW, enqueued, 1, timedelta(seconds=30), 0.5) == \
        NOW + timedelta(seconds=30)
    assert policy.next_attempt_at(NOW, enqueued, 1, timedelta(seconds=61), 0.5) is None
