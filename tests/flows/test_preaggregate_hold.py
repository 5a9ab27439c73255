"""Pre-aggregation holds a worker's assembled batches for a round of the source partitions
(`PreaggregateLogic`, `HeldRecords`): what goes out is what pre-aggregating the held batches in
one call gives, in the same order, and no batch is held longer than the policy says."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from flows.pipeline import (
    HOLD_MAX,
    HOLD_MIN_RECORDS,
    QUIET_PARTITION,
    HeldRecords,
    HeldState,
    PreaggregateLogic,
    Preaggregator,
    preaggregate_batches,
)
from flows.steps import Batch, Progress, forwarded
from ingest.assembly import Record
from ingest.span import LLMSpan, TraceContext
from metrics.partial import Partial
from tests.flows.cluster_flow import exact_rules

S = 1_000_000_000
T0 = 1_764_201_600 * S  # a minute boundary
START = datetime(2026, 1, 1, tzinfo=UTC)
PARTITIONS = ("0-spans", "1-spans")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _records(seed: int, count: int) -> list[Record]:
    rng = random.Random(seed)
    out: list[Record] = []
    for n in range(count):
        end = T0 + rng.randrange(120 * S)
        out.append(LLMSpan(
            trace_id=f"t{seed}-{n}", span_id="c", parent_span_id="root", kind="llm", name="chat",
            start_unix_ns=end - S, end_unix_ns=end,
            context=TraceContext(service=rng.choice(["bot", "rag", "qa"]),
                                 user_segment=rng.choice(["free", "pro"])),
            request_model=rng.choice(["gpt-4o-mini", "claude-3-5-haiku"]), provider="openai",
            operation="chat", input_tokens=rng.randrange(10, 500),
            output_tokens=rng.randrange(1, 200), is_error=rng.random() < 0.1,
            cost_usd=rng.random() / 100))
    return out


def _batch(shard: str, partition: str, records: list[Record]) -> Batch[Record]:
    newest = max((r.end_unix_ns for r in records if isinstance(r, LLMSpan)), default=T0)
    return Batch(shard, records, (Progress(forwarded(partition, shard), newest, 0, ""),))


def _logics(clock: Clock, keys: tuple[str, ...] = ("a0", "a1")
            ) -> tuple[HeldRecords, dict[str, PreaggregateLogic]]:
    held = HeldRecords(PARTITIONS, clock())
    preaggregator = Preaggregator(exact_rules)
    return held, {key: PreaggregateLogic(preaggregator, held, clock) for key in keys}


def _expected(batches: list[Batch[Record]]) -> list[tuple[str, Batch[Partial]]]:
    """One pre-aggregation call over `batches` (a fresh pre-aggregator: same partials)."""
    return preaggregate_batches(Preaggregator(exact_rules), batches)


def _partials(out: list[tuple[str, Batch[Partial]]]) -> int:
    return sum(len(batch.items) for _, batch in out)


def test_few_records_go_on_at_the_end_of_the_activation() -> None:
    clock = Clock()
    held, logics = _logics(clock)
    batch = _batch("a0", PARTITIONS[0], _records(1, 50))
    assert logics["a0"].on_batch([batch]) == ([], False)
    assert logics["a0"].notify_at() == clock.now  # Bytewax calls on_notify in this activation
    out, _ = logics["a0"].on_notify()
    assert list(out) == _expected([batch])
    assert held.batches == [] and logics["a0"].notify_at() is None


def test_a_round_of_every_partition_is_preaggregated_in_one_call() -> None:
    clock = Clock()
    held, logics = _logics(clock)
    first = _batch("a0", PARTITIONS[0], _records(1, HOLD_MIN_RECORDS))
    second = _batch("a1", PARTITIONS[1], _records(2, HOLD_MIN_RECORDS))
    logics["a0"].on_batch([first])
    assert logics["a0"].on_notify() == ([], False)  # partition 1 has not reported yet
    assert logics["a0"].notify_at() == START + HOLD_MAX
    clock.now += HOLD_MAX / 2
    logics["a1"].on_batch([second])
    out, _ = logics["a1"].on_notify()
    together = _expected([first, second])
    assert list(out) == together
    assert logics["a0"].on_notify() == ([], False)  # nothing left for the other key
    assert held.batches == []
    # The point of holding: one call makes fewer partials than one call per batch.
    assert _partials(together) < _partials(_expected([first])) + _partials(_expected([second]))


def test_nothing_is_held_longer_than_hold_max() -> None:
    clock = Clock()
    _, logics = _logics(clock)
    batch = _batch("a0", PARTITIONS[0], _records(1, HOLD_MIN_RECORDS))
    logics["a0"].on_batch([batch])
    assert logics["a0"].on_notify() == ([], False)
    clock.now += HOLD_MAX - timedelta(milliseconds=1)
    assert logics["a0"].on_notify() == ([], False)
    clock.now += timedelta(milliseconds=1)
    out, _ = logics["a0"].on_notify()
    assert list(out) == _expected([batch])


def test_a_quiet_partition_is_not_waited_for_until_it_reports_again() -> None:
    clock = Clock()
    _, logics = _logics(clock)
    clock.now += QUIET_PARTITION  # partition 1 silent since the start
    quiet = _batch("a0", PARTITIONS[0], _records(1, HOLD_MIN_RECORDS))
    logics["a0"].on_batch([quiet])
    out, _ = logics["a0"].on_notify()
    assert list(out) == _expected([quiet])
    # Once it reports, it is waited for again.
    logics["a1"].on_batch([_batch("a1", PARTITIONS[1], _records(2, 5))])
    assert len(list(logics["a1"].on_notify()[0])) > 0
    logics["a0"].on_batch([_batch("a0", PARTITIONS[0], _records(3, HOLD_MIN_RECORDS))])
    assert logics["a0"].on_notify() == ([], False)


def _held(state: HeldState) -> list[Batch[Record]]:
    return [batch for _, batch in state.batches]


def test_snapshots_keep_each_keys_held_batches_and_eof_sends_everything() -> None:
    clock = Clock()
    _, logics = _logics(clock)
    first = _batch("a0", PARTITIONS[0], _records(1, HOLD_MIN_RECORDS))
    second = _batch("a1", PARTITIONS[0], _records(2, 10))
    logics["a0"].on_batch([first])
    logics["a1"].on_batch([second])
    assert logics["a0"].on_notify() == ([], False)
    assert _held(logics["a0"].snapshot()) == [first]
    assert _held(logics["a1"].snapshot()) == [second]
    # Restored (as the flow's builder does): held again, nothing lost.
    restored_held, restored = _logics(clock)
    for key in ("a1", "a0"):
        restored[key].restore(logics[key].snapshot())
    out, _ = restored["a1"].on_eof()
    assert list(out) == _expected([first, second])
    assert restored["a0"].on_eof() == ([], False)
    out, _ = logics["a1"].on_eof()
    assert list(out) == _expected([first, second])
    assert _held(logics["a0"].snapshot()) == [] and restored_held.batches == []


def test_an_older_snapshot_does_not_send_batches_again() -> None:
    """A key not woken in the epoch another key pre-aggregated its batches keeps the snapshot
    of an earlier epoch; restored from both, those batches are not pre-aggregated twice."""
    clock = Clock()
    _, logics = _logics(clock)
    old = _batch("a0", PARTITIONS[0], _records(1, HOLD_MIN_RECORDS))
    logics["a0"].on_batch([old])
    logics["a0"].on_notify()
    stale = logics["a0"].snapshot()  # epoch 1: a0 holds `old`
    assert _held(stale) == [old]
    fresh = _batch("a1", PARTITIONS[1], _records(2, 10))
    logics["a1"].on_batch([fresh])
    out, _ = logics["a1"].on_notify()
    assert list(out) == _expected([old, fresh])  # epoch 2: a1 sent both
    kept = _batch("a1", PARTITIONS[1], _records(3, 10))
    logics["a1"].on_batch([kept])
    newer = logics["a1"].snapshot()  # epoch 2's snapshot of a1, which holds `kept`
    for order in (("a0", "a1"), ("a1", "a0")):
        _, restored = _logics(clock)
        states = {"a0": stale, "a1": newer}
        for key in order:
            restored[key].restore(states[key])
        out, _ = restored[order[0]].on_eof()
        assert list(out) == _expected([kept])
