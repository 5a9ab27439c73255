"""The flow's outputs reach the notify stage: usage for the digest, groups as notifications."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ingest.assembly import Record
from ingest.span import EvalResult, EvalScore, LLMSpan, TraceContext
from notify.digest_store import DigestStore
from notify.records import DigestReport
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


def _report(store: DigestStore) -> DigestReport:
    start = datetime.fromtimestamp(T0 / 1e9, tz=UTC)
    return store.report("digest", date(2025, 11, 27), "UTC", start, start + timedelta(days=1),
                        is_claimed=False)


def test_cluster_processes_add_up_instead_of_overwriting(tmp_path: Path) -> None:
    store = DigestStore(tmp_path / "digest.sqlite3")
    UsageRecorder(store, writer=0).write([_span(1), _span(2, error=True)])
    UsageRecorder(store, writer=1).write([_span(3)])  # same minute and series, other traces
    report = _report(store)
    assert (report.requests, report.errors) == (3, 1)
    assert abs(report.cost_usd - 1.5) < 1e-9
    store.close()


def test_quality_scores_of_spans_and_late_evaluations_feed_the_quality_trend(
        tmp_path: Path) -> None:
    store = DigestStore(tmp_path / "digest.sqlite3")
    scored = replace(_span(1), evals=(EvalScore("relevance", score=0.8),
                                      EvalScore("toxicity", score=0.9)))  # safety, not quality
    late = EvalResult(trace_id=f"{2:032x}", span_id=None, at_unix_ns=T0 + 20,
                      score=EvalScore("helpfulness", score=0.4),
                      context=TraceContext(prompt_template_version="v1"), model="gpt-4o")
    UsageRecorder(store).write([scored, late])
    report = _report(store)
    assert report.quality_mean is not None
    assert abs(report.quality_mean - 0.6) < 1e-9
    assert report.requests == 1  # an evaluation is not a request
    store.close()


def test_a_store_from_before_writers_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "digest.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE usage (window_start_unix_s INTEGER NOT NULL, model TEXT NOT NULL, "
        "prompt_version TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL, "
        "cost_usd REAL NOT NULL, quality_sum REAL NOT NULL, quality_count INTEGER NOT NULL, "
        "PRIMARY KEY (window_start_unix_s, model, prompt_version));")
    old.execute("INSERT INTO usage VALUES (?, 'gpt-4o', 'v1', 7, 2, 3.5, 0, 0)", (T0 // 10**9,))
    old.commit()
    old.close()
    store = DigestStore(path)
    UsageRecorder(store, writer=1).write([_span(1)])
    report = _report(store)
    assert (report.requests, report.errors) == (8, 2)
    store.close()
