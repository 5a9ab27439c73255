"""Trace assembly: root context joined onto LLM spans with a bounded wait."""

from __future__ import annotations

import gc
import pickle
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from ingest.assembly import TraceAssembler
from ingest.span import EvalResult, EvalScore, LLMSpan, TraceContext

S = 1_000_000_000


def _span(trace: str, span_id: str, end_s: float, *, parent: str | None = "root",
          kind: str = "llm", **context: str) -> LLMSpan:
    return LLMSpan(trace_id=trace, span_id=span_id, parent_span_id=parent, kind=kind,  # type: ignore[arg-type]
                   name=span_id, start_unix_ns=int((end_s - 1) * S), end_unix_ns=int(end_s * S),
                   context=TraceContext(**context), request_model="gpt-4o-mini",
                   provider="openai")


def _eval(trace: str, span_id: str | None, name: str = "quality") -> EvalResult:
    return EvalResult(trace_id=trace, span_id=span_id, at_unix_ns=0,
                      score=EvalScore(name, 0.9), context=TraceContext())


def _assembler(wait_s: float = 30, max_open: int = 1000) -> TraceAssembler:
    return TraceAssembler(wait_ns=int(wait_s * S), max_open_traces=max_open,
                          max_finished_traces=1000)


def test_root_arriving_after_its_children_completes_their_context() -> None:
    assembler = _assembler()
    assert assembler.add(_span("t1", "llm-a", 10, service="bot")) == []
    assert assembler.add(_span("t1", "llm-b", 11, service="bot")) == []
    out = assembler.add(_span("t1", "root", 12, parent=None, kind="request",
                              session_id="s1", prompt_template_version="v7"))
    assert [r.span_id for r in out] == ["root", "llm-a", "llm-b"]
    for span in out[1:]:
        assert isinstance(span, LLMSpan)
        assert span.context == TraceContext(service="bot", session_id="s1",
                                            prompt_template_version="v7")


def test_children_arriving_after_the_root_are_labelled_at_once() -> None:
    assembler = _assembler()
    assembler.add(_span("t1", "root", 12, parent=None, kind="request", session_id="s1"))
    (late,) = assembler.add(_span("t1", "llm-late", 12.5))
    assert isinstance(late, LLMSpan) and late.context.session_id == "s1"


def test_trace_whose_root_never_arrives_is_released_after_the_wait() -> None:
    assembler = _assembler(wait_s=30)
    assembler.add(_span("lost", "llm", 100, session_id="s9"))
    assert assembler.add(_span("other", "x", 129)) == []  # 29 s of stream time: still waiting
    out = assembler.add(_span("other", "y", 131))          # 31 s: the wait has run out
    assert [(r.trace_id, r.span_id) for r in out] == [("lost", "llm")]
    assert isinstance(out[0], LLMSpan) and out[0].context.session_id == "s9"


def test_spans_of_a_rootless_trace_share_what_each_knows() -> None:
    assembler = _assembler(wait_s=1)
    assembler.add(_span("t", "a", 10, session_id="s1"))
    assembler.add(_span("t", "b", 10, prompt_template_version="v2"))
    out = assembler.release_all()
    assert {s.context for s in out} == {TraceContext(session_id="s1",
                                                     prompt_template_version="v2")}


def test_open_trace_cap_releases_the_oldest_first() -> None:
    assembler = _assembler(max_open=2)
    assembler.add(_span("t1", "a", 1))
    assembler.add(_span("t2", "b", 1))
    out = assembler.add(_span("t3", "c", 1))
    assert [r.trace_id for r in out] == ["t1"]
    assert assembler.released_early == 1
    assert assembler.open_traces == 2


def test_evaluation_is_labelled_like_the_span_it_judges() -> None:
    assembler = _assembler()
    assembler.add(_span("t1", "llm", 10, service="bot"))
    assert assembler.add(_eval("t1", "llm")) == []  # waits with its trace
    out = assembler.add(_span("t1", "root", 11, parent=None, kind="request",
                              prompt_template_version="v7"))
    (result,) = [r for r in out if isinstance(r, EvalResult)]
    assert (result.model, result.provider) == ("gpt-4o-mini", "openai")
    assert result.context == TraceContext(service="bot", prompt_template_version="v7")


def test_evaluation_arriving_after_its_trace_was_released_is_still_labelled() -> None:
    assembler = _assembler(wait_s=1)
    assembler.add(_span("t1", "llm", 10, service="bot"))
    assembler.add(_span("t1", "root", 11, parent=None, kind="request", session_id="s1"))
    assembler.add(_span("t2", "x", 20))  # moves stream time past t1's wait
    (result,) = assembler.add(_eval("t1", None))
    assert isinstance(result, EvalResult)
    assert result.model == "gpt-4o-mini"
    assert result.context.session_id == "s1"



def _objects_in(value: object) -> list[object]:
    """Every object reachable from `value` through gc referents, but not through classes
    (an instance refers to its class, whose functions reach every module's globals)."""
    seen: set[int] = set()
    out: list[object] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        out.append(item)
        if not isinstance(item, type):
            stack.extend(gc.get_referents(item))
    return out


def test_released_traces_keep_no_spans_alive() -> None:
    """Up to `max_finished_traces` released traces are remembered for late evaluations; they
    keep what labelling reads, not the spans (200k traces of spans held a lot of memory)."""
    assembler = _assembler(wait_s=1)
    assembler.add(_span("t1", "llm", 10, service="bot"))
    assembler.add(_span("t1", "root", 11, parent=None, kind="request", session_id="s1"))
    assembler.add(_span("t2", "x", 20))  # releases t1
    assert not any(isinstance(o, LLMSpan) for o in _objects_in(assembler._finished))
    (result,) = assembler.add(_eval("t1", "llm"))
    assert isinstance(result, EvalResult)
    assert (result.model, result.provider) == ("gpt-4o-mini", "openai")
    assert result.context == TraceContext(service="bot", session_id="s1")


def test_a_snapshot_remembering_spans_still_labels_late_evaluations() -> None:
    """Recovery snapshots taken before the change hold the judged `LLMSpan`s themselves."""
    assembler = _assembler(wait_s=1)
    assembler.add(_span("t1", "root", 11, parent=None, kind="request", session_id="s1"))
    assembler.add(_span("t2", "x", 20))  # releases t1
    span = _span("t1", "llm", 10, service="bot")
    finished: Any = type(assembler._finished["t1"])  # as old snapshots built it
    old = finished(assembler._finished["t1"].context, span, {"llm": span})
    assembler._finished["t1"] = old
    restored = pickle.loads(pickle.dumps(assembler))  # noqa: S301 - our own bytes
    (result,) = restored.add(_eval("t1", "llm"))
    assert isinstance(result, EvalResult)
    assert (result.model, result.provider) == ("gpt-4o-mini", "openai")
    assert result.context == TraceContext(service="bot", session_id="s1")


# --- clocked by the watermark (own_clock=False), as in the flow ---------------------------------


def _watermark_clocked(wait_s: float = 30, max_open: int = 1000) -> TraceAssembler:
    return TraceAssembler(wait_ns=int(wait_s * S), max_open_traces=max_open,
                          max_finished_traces=1000, own_clock=False)


def test_backlog_batch_ahead_of_the_watermark_does_not_release_a_child_before_its_root() -> None:
    """A backlog batch spans minutes of event time: the child ends 300 s after the watermark the
    batch starts at, its root comes in the next batch. The wait counts from the child's own
    end, not from the (lagging) watermark, so the batch's progress does not release it."""
    assembler = _watermark_clocked(wait_s=30)
    assembler.advance(100 * S)
    assert assembler.add(_span("t1", "llm", 400, service="bot")) == []
    assert assembler.advance(410 * S) == []  # the batch's progress: 10 s past the child's end
    out = assembler.add(_span("t1", "root", 400.5, parent=None, kind="request",
                              session_id="s1"))
    assert [r.span_id for r in out] == ["root", "llm"]
    assert isinstance(out[1], LLMSpan) and out[1].context.session_id == "s1"


def test_child_without_root_is_released_once_the_watermark_passes_its_end_plus_the_wait() -> None:
    assembler = _watermark_clocked(wait_s=30)
    assembler.advance(100 * S)
    assembler.add(_span("t1", "llm", 400))
    assert assembler.advance(429 * S) == []
    assert [r.span_id for r in assembler.advance(430 * S)] == ["llm"]


def test_traces_are_released_by_deadline_whatever_order_they_opened_in() -> None:
    assembler = _watermark_clocked(wait_s=30)
    assembler.add(_span("ahead", "a", 500))   # from a partition minutes ahead
    assembler.add(_span("behind", "b", 100))  # from the slowest partition
    assert [r.trace_id for r in assembler.advance(130 * S)] == ["behind"]
    assert assembler.open_traces == 1
    assert [r.trace_id for r in assembler.advance(530 * S)] == ["ahead"]


def test_hold_limit_is_the_oldest_held_record_plus_the_wait() -> None:
    """Progress forwarded past the limit could close a held record's minute before its
    release; the limit lifts as traces are completed or released."""
    assembler = _watermark_clocked(wait_s=30)
    assert assembler.hold_limit_unix_ns() is None
    assembler.advance(200 * S)
    assembler.add(_span("t1", "llm", 300))
    assembler.add(_span("t2", "llm", 190))
    assembler.add(_eval_at("t3", 260))
    assert assembler.hold_limit_unix_ns() == 220 * S
    out = assembler.add(_span("t2", "root", 191, parent=None, kind="request"))
    assert {r.span_id for r in out} == {"root", "llm"}
    assert assembler.hold_limit_unix_ns() == 290 * S  # t2 holds nothing more: t3's eval
    assert [r.trace_id for r in assembler.advance(290 * S)] == ["t3"]
    assert assembler.hold_limit_unix_ns() == 330 * S
    assembler.release_all()
    assert assembler.hold_limit_unix_ns() is None


def test_a_record_arriving_late_holds_progress_at_its_arrival_not_below() -> None:
    """An evaluation judged long after its trace (which this shard no longer knows) waits for
    the trace like any record, but must not pin progress minutes back: holding it may only
    keep it from getting later than it arrived."""
    assembler = _watermark_clocked(wait_s=30)
    assembler.advance(1000 * S)
    assembler.add(_eval_at("old", 400))
    assert assembler.hold_limit_unix_ns() == 1000 * S
    assembler.add(_span("u", "llm", 985))  # 15 s behind: protected up to its end + wait
    assembler.add(_span("t", "llm", 1010))
    assert assembler.hold_limit_unix_ns() == 1000 * S
    assert {r.trace_id for r in assembler.advance(1030 * S)} == {"old", "u"}
    assert assembler.hold_limit_unix_ns() == 1040 * S  # progress moves on within the wait


def test_bookkeeping_stays_bounded_by_the_open_traces() -> None:
    """With its own clock (`spanwatch inspect`) nobody reads the hold limit; what it keeps of
    released traces must not grow with the input."""
    assembler = _assembler(wait_s=1)
    for index in range(5000):
        assembler.add(_span(f"t{index}", "llm", index * 0.01))
    assert assembler.open_traces <= 101
    assert len(assembler._limits) <= 2 * assembler.open_traces + 65
    limit = assembler.hold_limit_unix_ns()  # the oldest open trace's: still ahead of now
    assert limit is not None and assembler.now_unix_ns < limit <= assembler.now_unix_ns + S


def _eval_at(trace: str, at_s: float) -> EvalResult:
    return EvalResult(trace_id=trace, span_id=None, at_unix_ns=int(at_s * S),
                      score=EvalScore("quality", 0.9), context=TraceContext())


def test_context_merge_and_replacement_make_real_frozen_records() -> None:
    own = TraceContext(service="svc", session_id="s1", endpoint="")
    root = TraceContext(service="other", environment="prod", session_id="s2", endpoint="/chat")
    merged = own.merged_with(root)
    assert merged == TraceContext(service="svc", environment="prod", session_id="s1",
                                  endpoint="/chat")  # own values win; "" counts as empty
    assert type(merged) is TraceContext and hash(merged) == hash(TraceContext(
        service="svc", environment="prod", session_id="s1", endpoint="/chat"))
    span = _span("t1", "a", 10, session_id="s1")
    moved = span.with_context(merged)
    assert moved == replace(span, context=merged) and type(moved) is LLMSpan
    assert span.context == TraceContext(session_id="s1")  # the original is unchanged
    with pytest.raises(FrozenInstanceError):
        moved.context = own  # type: ignore[misc]
