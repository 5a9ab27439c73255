"""A shard of series end to end: partial buckets, lateness, sessions, retirement, state."""

from __future__ import annotations

import pickle
import random
from collections import Counter
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import LLMSpan, TraceContext
from metrics.bucket import MINUTE_NS, PICO_USD, event_unix_ns, minute_of
from metrics.partial import preaggregate
from metrics.series import SeriesKey, series_key
from metrics.shard import ShardWindows
from metrics.watermark import Watermark
from metrics.windows import DAY_NS, ClosedMinute, WindowConfig
from tests.metrics.strategies import T0, Record, records
from tests.metrics.test_windows import _bucket, records_only

GROUP_BYS = [("service",), ("model", "service"), ()]
CONFIG = WindowConfig(retire_after=timedelta(hours=1))
FAR = T0 + DAY_NS
IDLE_NS = 30 * MINUTE_NS


def _minutes(closed: list[ClosedMinute]) -> list[tuple[SeriesKey, int, object]]:
    return sorted(((c.key, c.minute_start_unix_ns, c.bucket.to_state()) for c in closed),
                  key=lambda item: (item[0], item[1]))


@settings(max_examples=80, deadline=None)
@given(records(max_size=80), st.randoms(use_true_random=False))
def test_partials_give_the_same_minutes_as_single_records(recs: list[Record],
                                                          rnd: random.Random) -> None:
    direct, batched = ShardWindows(CONFIG), ShardWindows(CONFIG)
    for record in recs:
        for group in GROUP_BYS:
            direct.add(series_key(record, group), record)
    shuffled = recs[:]
    rnd.shuffle(shuffled)
    while shuffled:
        cut = rnd.randint(1, 20)
        batch, shuffled = shuffled[:cut], shuffled[cut:]
        for partial in preaggregate(batch, GROUP_BYS):
            batched.add_partial(partial)
    assert _minutes(direct.close_until(FAR)) == _minutes(batched.close_until(FAR))
    assert direct.late.counts == batched.late.counts


def _sessions(spans: list[LLMSpan]) -> tuple[int, int]:
    """(sessions, total priced cost in pico-USD) by sort-and-split, sessions with a price."""
    count = cost = 0
    for sid in {s.context.session_id for s in spans if s.context.session_id}:
        mine = sorted((s for s in spans if s.context.session_id == sid),
                      key=lambda s: s.end_unix_ns)
        runs: list[list[LLMSpan]] = [[mine[0]]]
        for span in mine[1:]:
            if span.end_unix_ns - runs[-1][-1].end_unix_ns >= IDLE_NS:
                runs.append([])
            runs[-1].append(span)
        count += len(runs)
        cost += sum(round(s.cost_usd * PICO_USD) for run in runs for s in run
                    if s.kind in ("llm", "embedding") and s.cost_usd is not None)
    return count, cost


@settings(max_examples=80, deadline=None)
@given(records(span_ns=120 * MINUTE_NS, max_size=80), st.randoms(use_true_random=False))
def test_skewed_partitions_lose_nothing_and_count_every_late_record(
        recs: list[Record], rnd: random.Random) -> None:
    """4 partitions, each minutes behind the previous; the watermark follows the slowest."""
    partitions = [f"p{i}" for i in range(4)]
    skew = {p: i * 2 * MINUTE_NS for i, p in enumerate(partitions)}
    assigned = [(rnd.choice(partitions), r) for r in recs]
    # a partition delivers its records in event order, `skew` behind wall time
    queue = sorted(assigned, key=lambda pr: (event_unix_ns(pr[1]) + skew[pr[0]],
                                             rnd.random()))
    watermark = Watermark(partitions, allowed_lateness=timedelta(seconds=rnd.choice([0, 30])),
                          idle_timeout=timedelta(minutes=3), started_wall_unix_ns=T0)
    shard = ShardWindows(CONFIG)
    closed: list[ClosedMinute] = []
    verdicts: Counter[str] = Counter()
    folded: list[Record] = []
    for partition, record in queue:
        wall = event_unix_ns(record) + skew[partition] + rnd.randrange(10**9)
        wm = watermark.current(wall)
        for group in GROUP_BYS:
            verdict = shard.add(series_key(record, group), record, wm)
            verdicts[verdict] += 1
        if verdict != "too_late":
            folded.append(record)
        watermark.observe(partition, event_unix_ns(record), wall)
        now = watermark.current(wall)
        if now is not None and rnd.random() < 0.5:
            closed += shard.close_until(now)
    closed += shard.close_until(FAR)
    # every series retires at the end; one made only by too-late records retires at once
    assert len(shard) == 0 and shard.retired >= len({series_key(r, g) for r in recs
                                                     for g in GROUP_BYS})
    assert sum(c.bucket.records for c in closed) + verdicts["too_late"] == \
        len(recs) * len(GROUP_BYS)
    assert sum(c.bucket.too_late for c in closed) == verdicts["too_late"]
    assert sum(c.bucket.late_folded for c in closed) == verdicts["late_folded"]
    assert dict(shard.late.counts) == {k: verdicts[k] for k in shard.late.counts}
    global_series = [c for c in closed if c.key == ()]
    by_minute: dict[int, list[Record]] = {}
    for record in folded:
        by_minute.setdefault(minute_of(event_unix_ns(record)), []).append(record)
    for c in global_series:
        want = _bucket(by_minute.get(c.minute_start_unix_ns, []))
        assert records_only(c.bucket.to_state()) == records_only(want.to_state())
    sessions = sum(c.bucket.sessions_closed for c in global_series)
    cost = sum(c.bucket.session_cost_sum_pusd for c in global_series)
    spans = [r for r in folded if isinstance(r, LLMSpan)]
    want_sessions, want_cost = _sessions(spans)
    assert sessions == want_sessions and cost == want_cost


def test_series_silent_for_retire_after_are_dropped() -> None:
    shard = ShardWindows(CONFIG)
    span = LLMSpan(trace_id="t", span_id="s", parent_span_id=None, kind="llm", name="chat",
                   start_unix_ns=T0, end_unix_ns=T0 + 10**9, context=TraceContext())
    shard.add(series_key(span, ("service",)), span)
    shard.close_until(T0 + 30 * MINUTE_NS)
    assert len(shard) == 1  # still live: empty minutes keep coming
    closed = shard.close_until(T0 + 3 * 60 * MINUTE_NS)
    assert closed[-1].minute_start_unix_ns == T0 + 59 * MINUTE_NS  # retire_after = 1 h
    assert len(shard) == 0 and shard.retired == 1


@settings(max_examples=30, deadline=None)
@given(records(max_size=60), st.integers(0, 60))
def test_snapshot_restore_continues_exactly(recs: list[Record], cut: int) -> None:
    ordered = sorted(recs, key=event_unix_ns)
    original = ShardWindows(CONFIG)

    def feed(shard: ShardWindows, part: list[Record]) -> list[ClosedMinute]:
        out: list[ClosedMinute] = []
        for record in part:
            shard.add(series_key(record, ("service",)), record, event_unix_ns(record))
            out += shard.close_until(event_unix_ns(record) - MINUTE_NS)
        return out

    feed(original, ordered[:cut])
    recovered = pickle.loads(pickle.dumps(original.snapshot()))  # noqa: S301  # as Bytewax
    restored = ShardWindows.restore(recovered, CONFIG)
    a = feed(original, ordered[cut:]) + original.close_until(FAR)
    b = feed(restored, ordered[cut:]) + restored.close_until(FAR)
    assert _minutes(a) == _minutes(b)
    assert original.snapshot() == restored.snapshot()
