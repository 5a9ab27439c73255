"""Trace assembly: join a trace's root-span context onto its LLM spans, with a bounded wait.

In: `LLMSpan`s and `EvalResult`s of many traces, in arrival order. Out: the same records with
their `TraceContext` completed from the trace's root span (session, user, prompt template and
app versions usually sit only there, and the root is exported after its children).

A span waits until its trace's root arrives or until stream time has moved `wait` past the
trace's first record (its end, or stream time at arrival if that is later), whichever is first.
Stream time is the latest span end seen, or a watermark the caller drives (`own_clock=False`).
Counting from the record's own time matters when stream time lags the records: a backlog batch
spans minutes of event time, and a child near its end must still wait for a root that comes in
the next batch. `hold_limit_unix_ns` tells the caller how far progress may be forwarded without
letting a held record's minute close. The number of open traces is capped; past the cap the
trace with the earliest deadline is released early. Evaluations that arrive after their trace
was released are labelled from a bounded memory of finished traces.

Pure: time comes in as an argument; the Bytewax adapter supplies it.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ingest.span import EvalResult, LLMSpan, TraceContext, build_context, fast_builder

Record = LLMSpan | EvalResult


def _completed(span: LLMSpan, context: TraceContext) -> LLMSpan:
    """The span with its empty context fields taken from `context` (itself if none change)."""
    merged = span.context.merged_with(context)
    if merged == span.context:
        return span
    return span.with_context(merged)


def _event_unix_ns(record: Record) -> int:
    """The time a record is bucketed by (as `metrics.bucket.event_unix_ns`)."""
    return record.end_unix_ns if isinstance(record, LLMSpan) else record.at_unix_ns


class _Subject(NamedTuple):
    """What labelling an evaluation reads of the LLM span it judges (`_labelled`): kept per
    LLM span of a trace instead of the span, so the memory of up to `max_finished_traces`
    finished traces does not keep their spans alive. (Recovery snapshots taken before this
    hold `LLMSpan`s here, which have the same three attributes.)"""

    context: TraceContext
    provider: str | None
    model: str | None


@dataclass(slots=True)
class _OpenTrace:
    deadline_unix_ns: int
    seq: int
    """Opening order; tells heap entries of a re-opened trace id apart."""
    root_context: TraceContext | None = None
    hold_limit_unix_ns: int | None = None
    """The lowest limit of the held records (None: nothing held); see `hold_limit_unix_ns`."""
    held_spans: list[LLMSpan] = field(default_factory=list)
    held_evals: list[EvalResult] = field(default_factory=list)
    subject: _Subject | None = None
    """An LLM span of the trace; evaluations without a span id are labelled with its model."""
    subjects_by_span: dict[str, _Subject] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Finished:
    context: TraceContext
    subject: _Subject | None
    subjects_by_span: dict[str, _Subject]


_new_finished: Callable[[TraceContext, _Subject | None, dict[str, _Subject]], _Finished] = \
    fast_builder(_Finished)
"""`_Finished(...)` without the frozen `__init__` (one per trace; same object, same pickle)."""


def _empty_context() -> TraceContext:
    """`TraceContext()`, without its frozen keyword `__init__` (a new object each time, as
    before, so recovery snapshots pickle the same)."""
    return build_context(None, None, None, None, None, None, None, None, None)


class TraceAssembler:
    """Holds LLM spans until their trace's root context is known (or the wait runs out)."""

    def __init__(self, wait_ns: int, max_open_traces: int, max_finished_traces: int, *,
                 own_clock: bool = True) -> None:
        if wait_ns <= 0:
            raise ValueError(f"wait_ns must be > 0, got {wait_ns}")
        self._wait_ns = wait_ns
        self._own_clock = own_clock
        """True: stream time is the latest span end this assembler saw. False: the caller
        drives it with `advance` (the flow passes the watermark over all source partitions,
        so one partition running ahead cannot release another's traces early)."""
        self._max_open = max_open_traces
        self._max_finished = max_finished_traces
        self._open: dict[str, _OpenTrace] = {}
        self._deadlines: list[tuple[int, int, str]] = []
        """Heap of (deadline, seq, trace id), one entry per open trace: records of partitions
        skewed in event time open traces in no particular deadline order."""
        self._limits: list[tuple[int, int, str]] = []
        """Heap of (hold limit, seq, trace id); stale entries are dropped when read."""
        self._seq = 0
        self._finished: OrderedDict[str, _Finished] = OrderedDict()
        self.now_unix_ns = 0
        """Stream time: the latest span end seen."""
        self.released_early = 0
        """Traces released before their wait ran out because the open-trace cap was reached."""

    @property
    def open_traces(self) -> int:
        return len(self._open)

    def hold_limit_unix_ns(self) -> int | None:
        """How far progress may be forwarded while records are held here; None: nothing held.

        Downstream, minutes close behind forwarded progress by the wait (and the allowed
        lateness). A held record's limit is its event time plus the wait, so forwarding up to
        it cannot close the record's minute nor make it late before its release; or, for a
        record that arrived already that late, the stream time at its arrival, so holding it
        makes it no later than it came (and cannot stall progress for longer than the wait).
        """
        limits = self._limits
        while limits:
            limit, seq, trace_id = limits[0]
            trace = self._open.get(trace_id)
            if trace is not None and trace.seq == seq and trace.hold_limit_unix_ns == limit:
                return limit
            heapq.heappop(limits)
        return None

    def add(self, record: Record) -> list[Record]:
        """Take one record; return the records that are ready now."""
        out: list[Record] = []
        if isinstance(record, LLMSpan):
            if self._own_clock:
                self.now_unix_ns = max(self.now_unix_ns, record.end_unix_ns)
            self._add_span(record, out)
        else:
            self._add_eval(record, out)
        out.extend(self.release_due(self.now_unix_ns))
        return out

    def add_many(self, records: Iterable[Record]) -> list[Record]:
        """`add` for each record in turn; the records that are ready, in one list."""
        out: list[Record] = []
        if self._own_clock:
            for record in records:
                out.extend(self.add(record))
            return out
        # On the caller's clock stream time stands still while records are added, and a trace
        # opened since the last `advance` has its deadline past it: nothing falls due here
        # (only the open-trace cap releases), so `release_due` is not run per record.
        add_span, add_eval = self._add_span, self._add_eval
        for record in records:
            if isinstance(record, LLMSpan):
                add_span(record, out)
            else:
                add_eval(record, out)
        return out

    def _trace(self, trace_id: str, first: Record) -> _OpenTrace:
        trace = self._open.get(trace_id)
        if trace is None:
            # The wait counts from the record's own time: stream time may lag it by minutes.
            deadline = max(self.now_unix_ns, _event_unix_ns(first)) + self._wait_ns
            self._seq += 1
            # Positional, every field: no keyword matching or default factories (per trace).
            trace = _OpenTrace(deadline, self._seq, None, None, [], [], None, {})
            self._open[trace_id] = trace
            heapq.heappush(self._deadlines, (deadline, self._seq, trace_id))
        return trace

    def _hold(self, trace_id: str, trace: _OpenTrace, record: Record) -> None:
        limit = max(_event_unix_ns(record) + self._wait_ns, self.now_unix_ns)
        if trace.hold_limit_unix_ns is None or limit < trace.hold_limit_unix_ns:
            trace.hold_limit_unix_ns = limit
            heapq.heappush(self._limits, (limit, trace.seq, trace_id))
            if len(self._limits) > 2 * len(self._open) + 64:
                # Stale entries are otherwise dropped only when read (never, on an own clock).
                self._limits = [(t.hold_limit_unix_ns, t.seq, tid) for tid, t in self._open.items()
                                if t.hold_limit_unix_ns is not None]
                heapq.heapify(self._limits)

    def _add_span(self, span: LLMSpan, out: list[Record]) -> None:
        trace_id = span.trace_id
        finished = self._finished.get(trace_id)
        if finished is not None:  # a straggler of a released trace: label it right away
            out.append(_completed(span, finished.context))
            return
        trace = self._open.get(trace_id) or self._trace(trace_id, span)
        if span.kind in ("llm", "embedding"):
            subject = _Subject(span.context, span.provider, span.request_model
                               or span.response_model)
            trace.subject = trace.subject or subject
            trace.subjects_by_span[span.span_id] = subject
        if span.parent_span_id is None:  # the root (span.is_root, without the call)
            trace.root_context = span.context
            out.append(span)
            for held in trace.held_spans:
                out.append(_completed(held, span.context))
            trace.held_spans.clear()
            if trace.held_evals:
                out.extend(self._label_evals(trace, trace.held_evals))
                trace.held_evals.clear()
            trace.hold_limit_unix_ns = None
        elif trace.root_context is not None:
            out.append(_completed(span, trace.root_context))
        else:
            trace.held_spans.append(span)
            self._hold(trace_id, trace, span)
        if len(self._open) > self._max_open:
            self._enforce_cap(out)

    def _add_eval(self, result: EvalResult, out: list[Record]) -> None:
        finished = self._finished.get(result.trace_id)
        if finished is not None:
            out.append(_labelled(result, finished.context, finished.subject,
                                 finished.subjects_by_span))
            return
        trace = self._trace(result.trace_id, result)
        if trace.root_context is not None:
            out.extend(self._label_evals(trace, [result]))
        else:
            trace.held_evals.append(result)
            self._hold(result.trace_id, trace, result)
        self._enforce_cap(out)

    def _label_evals(self, trace: _OpenTrace, evals: list[EvalResult]) -> list[Record]:
        context = trace.root_context or TraceContext()
        return [_labelled(e, context, trace.subject, trace.subjects_by_span) for e in evals]

    def advance(self, now_unix_ns: int) -> list[Record]:
        """Move stream time forward (external clock) and release what is due."""
        self.now_unix_ns = max(self.now_unix_ns, now_unix_ns)
        return self.release_due(self.now_unix_ns)

    def release_due(self, now_unix_ns: int) -> list[Record]:
        """Release every trace whose wait has run out by stream time `now_unix_ns`."""
        out: list[Record] = []
        while self._deadlines and self._deadlines[0][0] <= now_unix_ns:
            self._release_first(out)
        return out

    def release_all(self) -> list[Record]:
        """Release everything (end of input), earliest deadline first."""
        out: list[Record] = []
        while self._deadlines:
            self._release_first(out)
        self._limits.clear()
        return out

    def _enforce_cap(self, out: list[Record]) -> None:
        while len(self._open) > self._max_open:
            self.released_early += 1
            self._release_first(out)

    def _release_first(self, out: list[Record]) -> None:
        """Release the open trace with the earliest deadline."""
        _, _, trace_id = heapq.heappop(self._deadlines)
        self._release(trace_id, out)

    def _release(self, trace_id: str, out: list[Record]) -> None:
        trace = self._open.pop(trace_id)
        context = trace.root_context
        if context is None:
            # No root arrived: the spans keep the context they carry themselves. Spans of the
            # same trace still share what any of them knows (e.g. OpenInference session ids).
            context = _empty_context()
            for span in trace.held_spans:
                context = context.merged_with(span.context)
        for span in trace.held_spans:  # (none when the root came: it released them)
            out.append(_completed(span, context))
        if trace.held_evals:
            out.extend(_labelled(e, context, trace.subject, trace.subjects_by_span)
                       for e in trace.held_evals)
        self._finished[trace_id] = _new_finished(context, trace.subject, trace.subjects_by_span)
        while len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)


def _labelled(result: EvalResult, context: TraceContext, subject: _Subject | None,
              subjects_by_span: dict[str, _Subject]) -> EvalResult:
    """The evaluation labelled like the span it judges (its own span, else the trace's)."""
    target = subjects_by_span.get(result.span_id or "") or subject
    if target is not None:
        context = target.context.merged_with(context)
    return replace(
        result,
        context=result.context.merged_with(context),
        provider=result.provider or (target.provider if target else None),
        model=result.model or (target.model if target else None),
    )
