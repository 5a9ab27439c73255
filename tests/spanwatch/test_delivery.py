"""The flow's outputs reach the notify stage: usage for the digest, groups as notifications."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ingest.assembly import Record
from ingest.span import LLMSpan, TraceContext
from notify.digest_store import DigestStore
from spanwatch.delivery import UsageRecorder

T0 = 1_764_201_600_000_000_000  # 2025-11-27T00:00:00Z


def _span(i: int, *, error: bool = False) -> LLMSpan:
    return LLMSpan(trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id="1" * 16,
                   kind="llm", name="chat", start_unix_ns=T0 + i, end_unix_ns=T0 + 10 + i,
                   context=TraceContext(prompt_template_version="v1"),
                   request_model="gpt-4o", is_error=error, cost_usd=0.5)


def test_usage_is_cumulative_per_minute_and_a_replay_does_not_double_count(
        tmp_path: Path) -> None:
    store = DigestStore(tmp_path / "digest.sqlite3")
    recorder = UsageRecorder(store)
    first: list[Record] = [_span(1), _span(2, error=True)]
    recorder.write(first)
    recorder.write([_span(3)])  # same minute, later batch: the row is replaced by the total

    start = datetime.fromtimestamp(T0 / 1e9, tz=UTC)
    report = store.report("digest", date(2025, 11, 27), "UTC", start,
                          start + timedelta(days=1), is_claimed=False)
    assert (report.requests, report.errors) == (3, 1)
    assert abs(report.cost_usd - 1.5) < 1e-9

    fresh = UsageRecorder(store)  # a restart replays the minute from Kafka
    fresh.write([*first, _span(3)])
    again = store.report("digest", date(2025, 11, 27), "UTC", start,
                         start + timedelta(days=1), is_claimed=False)
    assert (again.requests, again.errors) == (3, 1)
    store.close()


def test_non_model_spans_are_not_usage(tmp_path: Path) -> None:
    store = DigestStore(tmp_path / "digest.sqlite3")
    UsageRecorder(store).write([replace(_span(1), kind="request")])
    start = datetime.fromtimestamp(T0 / 1e9, tz=UTC)
    report = store.report("digest", date(2025, 11, 27), "UTC", start,
                          start + timedelta(days=1), is_claimed=False)
    assert report.requests == 0
    store.close()
