"""The flow's trace-assembly step (`AssemblyLogic`) with the window step behind it, in memory:
backlog batches that span minutes of event time must neither release a child span before its
root arrives in the next batch, nor forward progress that closes a held span's minute.
"""

from __future__ import annotations

import pickle
import time
from datetime import timedelta

from flows.pipeline import WINDOW_KEYS, Preaggregator, preaggregate_batches
from flows.steps import (
    AssemblyLogic,
    AssemblyState,
    Batch,
    Progress,
    WatermarkPolicy,
    WindowLogic,
    WindowState,
    forwarded,
    new_watermark,
)
from ingest.assembly import Record, TraceAssembler
from ingest.span import LLMSpan, TraceContext
from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute
from rules.evaluate import RuleEvaluator
from rules.lifecycle import AlertLifecycle
from tests.flows.cluster_flow import exact_rules, late_counts

S = 1_000_000_000
T0 = 1_764_201_600 * S  # a minute boundary
WAIT = timedelta(seconds=30)
SHARD = "a0"
PARTITION = "0-spans"


def span(trace: str, span_id: str, end_s: float, *, root: bool = False,
         **context: str) -> LLMSpan:
    end = T0 + int(end_s * S)
    return LLMSpan(trace_id=trace, span_id=span_id, parent_span_id=None if root else "root",
                   kind="request" if root else "llm", name=span_id, start_unix_ns=end - S,
                   end_unix_ns=end, context=TraceContext(service="bot", **context),
                   request_model="" if root else "gpt-4o-mini", provider="openai")


def progress(at_s: float) -> Progress:
    """Decode's progress for the one source partition."""
    return Progress(PARTITION, T0 + int(at_s * S), time.time_ns())


def assembly_step() -> AssemblyLogic:
    policy = WatermarkPolicy((PARTITION,), idle_timeout=timedelta(seconds=30),
                             allowed_lateness=timedelta(0))
    return AssemblyLogic(AssemblyState(
        TraceAssembler(wait_ns=int(WAIT.total_seconds() * S), max_open_traces=1000,
                       max_finished_traces=1000, own_clock=False),
        new_watermark(policy, timedelta(0))))


def run(step: AssemblyLogic, records: list[Record], *progress: Progress) -> Batch[Record]:
    """One call with one source batch's `Batch`; the step's one `Batch` out (empty if none)."""
    out, done = step.on_batch([Batch(SHARD, records, progress)])
    assert not done
    sent = list(out)
    assert len(sent) <= 1, "at most one Batch per call"
    assert all(batch.shard == SHARD for batch in sent)
    return sent[0] if sent else Batch(SHARD, [])


def test_child_in_one_backlog_batch_gets_the_root_from_the_next() -> None:
    step = assembly_step()
    run(step, [], progress(10))
    # One backlog batch covers minutes 0-5; its last trace's root is in the next batch.
    first = run(step, [span("t", "llm", 299)], progress(299))
    assert list(first.items) == []
    second = run(step, [span("t", "root", 299.1, root=True, session_id="s1")], progress(330))
    labelled = {r.span_id: r.context.session_id for r in second.items if isinstance(r, LLMSpan)}
    assert labelled == {"root": "s1", "llm": "s1"}


def test_a_held_child_and_the_forwarding_survive_a_snapshot() -> None:
    """Bytewax recovery pickles the step state: restored mid-wait, the child still gets its
    root, and progress goes on being forwarded behind the released records."""
    step = assembly_step()
    run(step, [], progress(10))
    first = run(step, [span("t", "llm", 299)], progress(299))
    assert [p.max_event_unix_ns for p in first.progress] == [T0 + 299 * S]
    restored = AssemblyLogic(pickle.loads(pickle.dumps(step.snapshot())))  # noqa: S301 - own bytes
    second = run(restored, [span("t", "root", 299.1, root=True, session_id="s1")],
                 progress(340))
    labelled = {r.span_id: r.context.session_id for r in second.items if isinstance(r, LLMSpan)}
    assert labelled == {"root": "s1", "llm": "s1"}
    assert [(p.partition, p.max_event_unix_ns) for p in second.progress] == [
        (forwarded(PARTITION, SHARD), T0 + 340 * S)]


def test_forwarded_progress_stops_short_of_closing_a_held_spans_minute() -> None:
    """A span arrives 16 s behind the watermark (its minute still open) and waits for its root;
    the source moves on. Progress forwarded while it is held must not let the window step close
    its minute, and once the wait runs out, the span is counted on time."""
    assembly = assembly_step()
    rules = exact_rules()
    window_policy = WatermarkPolicy((forwarded(PARTITION, SHARD),),
                                    idle_timeout=timedelta(seconds=30),
                                    allowed_lateness=timedelta(0))
    closed: list[ClosedMinute] = []
    windows = {key: WindowLogic(WindowState(ShardWindows(), new_watermark(window_policy, WAIT),
                                            RuleEvaluator(rules), AlertLifecycle()),
                                lambda: rules, on_closed_minutes=closed.extend)
               for key in WINDOW_KEYS}
    preaggregator = Preaggregator(lambda: rules)

    def through(records: list[Record], at_s: float) -> None:
        for key, batch in preaggregate_batches(preaggregator,
                                               [run(assembly, records, progress(at_s))]):
            windows[key].on_batch([batch])

    before = late_counts()
    through([span("other", "x", 0), span("other", "r", 0.5, root=True)], 75)
    through([span("held", "llm", 59)], 75)  # minute 0 closes at 90 s
    through([], 100)                        # the span is held until 105 s
    assert not [m for m in closed if m.minute_start_unix_ns == T0], "minute 0 closed early"
    through([], 110)                        # released: on time
    for step in windows.values():
        step.on_eof()

    after = late_counts()
    late = {v: n - before.get(v, 0) for v, n in after.items() if n != before.get(v, 0)}
    assert late == {}, "a held span became late"
    requests = sum(m.bucket.requests for m in closed if m.minute_start_unix_ns == T0)
    assert requests == 2
