"""Trace assembly: join a trace's root-span context onto its LLM spans, with a bounded wait.

In: `LLMSpan`s and `EvalResult`s of many traces, in arrival order. Out: the same records with
their `TraceContext` completed from the trace's root span (session, user, prompt template and
app versions usually sit only there, and the root is exported after its children).

A span waits until its trace's root arrives or until the stream has moved `wait` past the
trace's arrival (stream time = the latest span end seen), whichever is first. The number of open
traces is capped; past the cap the oldest trace is released early. Evaluations that arrive after
their trace was released are labelled from a bounded memory of finished traces.

Pure: time comes in as an argument; the Bytewax adapter supplies it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from ingest.span import EvalResult, LLMSpan, TraceContext

Record = LLMSpan | EvalResult


@dataclass(slots=True)
class _OpenTrace:
    deadline_unix_ns: int
    root_context: TraceContext | None = None
    held_spans: list[LLMSpan] = field(default_factory=list)
    held_evals: list[EvalResult] = field(default_factory=list)
    subject: LLMSpan | None = None
    """An LLM span of the trace; evaluations without a span id are labelled with its model."""
    subjects_by_span: dict[str, LLMSpan] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Finished:
    context: TraceContext
    subject: LLMSpan | None
    subjects_by_span: dict[str, LLMSpan]


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
        self._open: OrderedDict[str, _OpenTrace] = OrderedDict()  # oldest deadline first
        self._finished: OrderedDict[str, _Finished] = OrderedDict()
        self.now_unix_ns = 0
        """Stream time: the latest span end seen."""
        self.released_early = 0
        """Traces released before their wait ran out because the open-trace cap was reached."""

    @property
    def open_traces(self) -> int:
        return len(self._open)

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

    def _trace(self, trace_id: str) -> _OpenTrace:
        trace = self._open.get(trace_id)
        if trace is None:
            trace = _OpenTrace(deadline_unix_ns=self.now_unix_ns + self._wait_ns)
            self._open[trace_id] = trace
        return trace

    def _add_span(self, span: LLMSpan, out: list[Record]) -> None:
        finished = self._finished.get(span.trace_id)
        if finished is not None:  # a straggler of a released trace: label it right away
            out.append(span.with_context(span.context.merged_with(finished.context)))
            return
        trace = self._trace(span.trace_id)
        if span.kind in ("llm", "embedding"):
            trace.subject = trace.subject or span
            trace.subjects_by_span[span.span_id] = span
        if span.is_root:
            trace.root_context = span.context
            out.append(span)
            for held in trace.held_spans:
                out.append(held.with_context(held.context.merged_with(span.context)))
            trace.held_spans.clear()
            out.extend(self._label_evals(trace, trace.held_evals))
            trace.held_evals.clear()
        elif trace.root_context is not None:
            out.append(span.with_context(span.context.merged_with(trace.root_context)))
        else:
            trace.held_spans.append(span)
        self._enforce_cap(out)

    def _add_eval(self, result: EvalResult, out: list[Record]) -> None:
        finished = self._finished.get(result.trace_id)
        if finished is not None:
            out.append(_labelled(result, finished.context, finished.subject,
                                 finished.subjects_by_span))
            return
        trace = self._trace(result.trace_id)
        if trace.root_context is not None:
            out.extend(self._label_evals(trace, [result]))
        else:
            trace.held_evals.append(result)
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
        while self._open:
            trace_id, trace = next(iter(self._open.items()))
            if trace.deadline_unix_ns > now_unix_ns:
                break
            self._release(trace_id, out)
        return out

    def release_all(self) -> list[Record]:
        """Release everything (end of input)."""
        out: list[Record] = []
        while self._open:
            self._release(next(iter(self._open)), out)
        return out

    def _enforce_cap(self, out: list[Record]) -> None:
        while len(self._open) > self._max_open:
            self.released_early += 1
            self._release(next(iter(self._open)), out)

    def _release(self, trace_id: str, out: list[Record]) -> None:
        trace = self._open.pop(trace_id)
        # No root arrived: the spans keep the context they carry themselves. Spans of the same
        # trace still share what any of them knows (e.g. OpenInference session ids).
        shared = TraceContext()
        for span in trace.held_spans:
            shared = shared.merged_with(span.context)
        context = trace.root_context or shared
        for span in trace.held_spans:
            out.append(span.with_context(span.context.merged_with(context)))
        out.extend(_labelled(e, context, trace.subject, trace.subjects_by_span)
                   for e in trace.held_evals)
        self._finished[trace_id] = _Finished(context, trace.subject, trace.subjects_by_span)
        while len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)


def _labelled(result: EvalResult, context: TraceContext, subject: LLMSpan | None,
              subjects_by_span: dict[str, LLMSpan]) -> EvalResult:
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
