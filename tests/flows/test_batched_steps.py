"""The batched flow steps (one `Batch` per shard and source batch instead of one item per span)
must be a pure repackaging: the same records, partials, windows and progress, in the same
order, as the item-by-item path; and the cheaper pieces they rest on (`LabelKeys`, the slot
copy of a span's context) must agree with the generic code they replace.
"""

from __future__ import annotations

import functools
import pickle
import random
from collections.abc import Iterable
from dataclasses import fields, replace
from datetime import timedelta
from typing import Any, cast

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.kafka_io import KafkaItem
from flows.pipeline import (
    ASSEMBLY_KEYS,
    WINDOW_KEYS,
    Preaggregator,
    decode_batch,
    preaggregate_batch,
    preaggregate_batches,
    trace_shard,
)
from flows.steps import (
    AssemblyLogic,
    AssemblyOut,
    AssemblyState,
    Batch,
    Progress,
    WatermarkPolicy,
    WindowIn,
    WindowLogic,
    WindowState,
    forwarded,
    new_watermark,
)
from ingest import assembly
from ingest.assembly import Record, TraceAssembler
from ingest.decode import DeadLetter, Decoded, Decoder, SourceMessage
from ingest.span import EvalResult, EvalScore, LLMSpan, TraceContext
from metrics.bucket import event_unix_ns
from metrics.partial import KeyFunction, LabelKeys, Partial, preaggregate_each
from metrics.series import LABELS, series_key
from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute
from rules.evaluate import RuleEvaluator
from rules.families import families
from rules.lifecycle import AlertLifecycle
from tests.flows.cluster_flow import exact_rules

S = 1_000_000_000
T0 = 1_764_201_600 * S  # a minute boundary
WAIT_NS = 30 * S
SHARD = "a0"
PARTITION = "0-spans"
WALL0 = 1_800_000_000 * S  # a fixed read clock: both paths see the same wall times


# --- traffic ------------------------------------------------------------------------------------

def _traces(rng: random.Random, count: int, span_s: float) -> list[Record]:
    """`count` traces over `span_s` seconds: a root with the context, 1-3 LLM calls that carry
    only the service (assembly fills the rest from the root), sometimes an eval of a call.
    Arrival order is shuffled within a few seconds, so children often precede their root; some
    roots arrive 45 s late."""
    timed: list[tuple[float, Record]] = []
    for n in range(count):
        trace = f"t{n}"
        at = rng.uniform(0, span_s)
        context = TraceContext(service=rng.choice(["bot", "rag"]),
                               session_id=f"s{rng.randrange(5)}",
                               user_segment=rng.choice(["free", "pro", None]),
                               environment="prod")
        end = T0 + int(at * S)
        # Some roots come after the wait: their calls are held until the deadline.
        root_delay = 45.0 if rng.random() < 0.15 else rng.uniform(0, 4)
        timed.append((at + root_delay, LLMSpan(
            trace_id=trace, span_id="root", parent_span_id=None, kind="request", name="root",
            start_unix_ns=end - 2 * S, end_unix_ns=end, context=context)))
        for k in range(rng.randint(1, 3)):
            child_end = end - rng.randrange(S)
            call = LLMSpan(
                trace_id=trace, span_id=f"c{k}", parent_span_id="root", kind="llm", name="chat",
                start_unix_ns=child_end - S, end_unix_ns=child_end,
                context=TraceContext(service=context.service),
                request_model=rng.choice(["gpt-4o-mini", "claude-3-5-haiku"]),
                provider="openai", operation="chat",
                input_tokens=rng.randrange(10, 500), output_tokens=rng.randrange(1, 200),
                is_error=rng.random() < 0.1, cost_usd=rng.random() / 100)
            timed.append((at + rng.uniform(-2, 4), call))
            if rng.random() < 0.3:
                timed.append((at + rng.uniform(0, 6), EvalResult(
                    trace_id=trace, span_id=call.span_id, at_unix_ns=child_end + 3 * S,
                    score=EvalScore("helpfulness", rng.random()),
                    context=TraceContext(service=context.service))))
    timed.sort(key=lambda pair: pair[0])
    return [record for _, record in timed]


def _source_batches(records: list[Record], size: int) -> list[tuple[list[Record], Progress]]:
    """Source batches of `size` records, each with decode's progress (the newest event time read
    so far) as addressed to assembly shard a0."""
    out: list[tuple[list[Record], Progress]] = []
    newest = -1
    for start in range(0, len(records), size):
        chunk = records[start:start + size]
        newest = max(newest, *(event_unix_ns(r) for r in chunk))
        out.append((chunk, Progress(PARTITION, newest, WALL0 + start * S // 10, SHARD)))
    return out


def _assembly(*, batched: bool) -> AssemblyLogic:
    policy = WatermarkPolicy((PARTITION,), idle_timeout=timedelta(seconds=30),
                             allowed_lateness=timedelta(0))
    return AssemblyLogic(AssemblyState(
        TraceAssembler(wait_ns=WAIT_NS, max_open_traces=40, max_finished_traces=1000,
                       own_clock=False),
        new_watermark(policy, timedelta(0))), batched=batched)


def _flat(out: list[AssemblyOut]) -> list[Record | Progress]:
    """A batched step's output as the item-by-item step would send it."""
    flat: list[Record | Progress] = []
    for value in out:
        assert isinstance(value, Batch), "a batched step sends only Batches"
        flat.extend(value.items)
        flat.extend(value.progress)
    return flat


def _unbatched(out: Iterable[AssemblyOut]) -> list[Record | Progress]:
    items: list[Record | Progress] = []
    for value in out:
        assert not isinstance(value, Batch), "an item-by-item step sends no Batches"
        items.append(value)
    return items


def _run_both(seed: int) -> tuple[list[list[Record | Progress]], list[list[AssemblyOut]]]:
    """The same source batches through an item-by-item and a batched assembly step."""
    rng = random.Random(seed)
    batches = _source_batches(_traces(rng, 60, 150), rng.randint(5, 40))
    single, batched = _assembly(batched=False), _assembly(batched=True)
    single_out: list[list[Record | Progress]] = []
    batched_out: list[list[AssemblyOut]] = []
    for records, progress in batches:
        out, done = single.on_batch([*records, progress])
        assert not done
        single_out.append(_unbatched(out))
        out_b, done = batched.on_batch([Batch(SHARD, records, (progress,))])
        assert not done
        batched_out.append(list(out_b))
    single_out.append(_unbatched(single.on_eof()[0]))
    batched_out.append(list(batched.on_eof()[0]))
    return single_out, batched_out


# --- assembly -----------------------------------------------------------------------------------

def test_batched_assembly_sends_what_item_by_item_sends_in_the_same_order() -> None:
    for seed in range(4):
        single, batched = _run_both(seed)
        assert [_flat(out) for out in batched] == single
        labelled = [r for out in single for r in out
                    if isinstance(r, LLMSpan) and r.kind == "llm"]
        # The comparison is not vacuous: calls were labelled from their root, and some (whose
        # root came after the wait) released without it.
        assert {r.context.session_id is None for r in labelled} == {True, False}
        assert any(isinstance(r, EvalResult) for out in single for r in out)


def test_a_batched_step_sends_at_most_one_batch_per_call_addressed_to_its_shard() -> None:
    _, batched = _run_both(11)
    for out in batched:
        assert len(out) <= 1
        assert all(isinstance(b, Batch) and b.shard == SHARD for b in out)


def _identity(record: Record) -> tuple[str, str, str | None, int]:
    return type(record).__name__, record.trace_id, record.span_id, event_unix_ns(record)


def test_progress_in_a_batch_is_never_ahead_of_its_records() -> None:
    """Forwarded progress must not pass a record still held upstream: until a held record is
    released, progress stays within its event time plus the wait (or the stream time it
    arrived at, if it came that late). Records of a Batch travel ahead of its progress."""
    capped = 0
    for seed in range(4):
        rng = random.Random(seed)
        batches = _source_batches(_traces(rng, 60, 150), rng.randint(5, 40))
        step = _assembly(batched=True)
        arrived: dict[tuple[str, str, str | None, int], tuple[int, int]] = {}
        """Record identity -> (call it arrived in, stream time before that call)."""
        sent: list[tuple[int, int]] = []
        """(call, forwarded event time) of every forwarded progress."""
        stream = -1
        held = 0
        for call, (records, progress) in enumerate(batches):
            for r in records:
                arrived[_identity(r)] = (call, stream)
            (out,) = step.on_batch([Batch(SHARD, records, (progress,))])[0]
            assert isinstance(out, Batch)
            assert all(p.partition == forwarded(PARTITION, SHARD) for p in out.progress)
            for record in out.items:
                came, stream_then = arrived[_identity(record)]
                bound = max(event_unix_ns(record) + WAIT_NS, stream_then)
                ahead = [at for at_call, at in sent if came <= at_call < call and at > bound]
                assert not ahead, f"progress {ahead} passed held {record.trace_id}"
                held += came < call
            sent.extend((call, p.max_event_unix_ns) for p in out.progress)
            capped += any(p.max_event_unix_ns < progress.max_event_unix_ns for p in out.progress)
            stream = max(stream, progress.max_event_unix_ns)
        assert held, "no record was held across calls: the check proved nothing"
    assert capped, "progress never had to wait for a held record: the check proved nothing"


# --- pre-aggregation and windows ----------------------------------------------------------------

def _window_steps(rules_partitions: tuple[str, ...]
                  ) -> tuple[dict[str, WindowLogic], dict[str, list[ClosedMinute]]]:
    rules = exact_rules()
    policy = WatermarkPolicy(rules_partitions, idle_timeout=timedelta(seconds=30),
                             allowed_lateness=timedelta(0))
    steps: dict[str, WindowLogic] = {}
    closed: dict[str, list[ClosedMinute]] = {}
    for key in WINDOW_KEYS:
        closed[key] = []
        state = WindowState(ShardWindows(), new_watermark(policy, timedelta(seconds=30)),
                            RuleEvaluator(rules), AlertLifecycle())
        steps[key] = WindowLogic(state, lambda: rules, on_closed_minutes=closed[key].extend)
    return steps, closed


def test_batched_preaggregation_closes_the_same_windows_as_item_by_item() -> None:
    rules = exact_rules()
    single, batched = _run_both(3)
    partitions = (forwarded(PARTITION, SHARD),)
    steps_1, closed_1 = _window_steps(partitions)
    steps_b, closed_b = _window_steps(partitions)
    preaggregator = Preaggregator(lambda: rules)
    partials_1: list[Partial] = []
    partials_b: list[Partial] = []
    for out_1, out_b in zip(single, batched, strict=True):
        per_key: dict[str, list[WindowIn]] = {key: [] for key in WINDOW_KEYS}
        for key, value in preaggregate_batch(lambda: rules, out_1):
            per_key[key].append(value)
        partials_1.extend(v for key in WINDOW_KEYS for v in per_key[key]
                          if isinstance(v, Partial))
        by_batch = preaggregate_batches(preaggregator, [b for b in out_b if isinstance(b, Batch)])
        assert len({key for key, _ in by_batch}) == len(by_batch), "one Batch per window shard"
        for key, batch in by_batch:
            assert batch.shard == key
            partials_b.extend(batch.items)
            # The Batch carries exactly the items the item path addresses to its shard.
            assert [*batch.items, *batch.progress] == [
                v if not isinstance(v, Progress) else replace(v, shard="")
                for v in per_key[key]]
        for key in WINDOW_KEYS:
            steps_1[key].on_batch(per_key[key])
            steps_b[key].on_batch([b for k, b in by_batch if k == key])
    for key in WINDOW_KEYS:
        steps_1[key].on_eof()
        steps_b[key].on_eof()
    assert partials_1 and partials_b == partials_1
    assert sum(len(c) for c in closed_1.values()) > 0
    assert closed_b == closed_1


# --- decode -------------------------------------------------------------------------------------

class _StubDecoder:
    """Decodes a message to the records stored under its offset."""

    def __init__(self, by_offset: dict[int, Decoded]) -> None:
        self._by_offset = by_offset

    def decode(self, message: SourceMessage) -> Decoded:
        return self._by_offset[message.offset]


def _records_of(decoded: Decoded) -> list[Record]:
    return [*decoded.spans, *decoded.evals]


def test_decode_batch_groups_records_by_trace_shard_with_progress_behind_them() -> None:
    records = _traces(random.Random(5), 40, 90)
    by_offset: dict[int, Decoded] = {}
    items: list[KafkaItem] = []
    for offset in range(0, len(records), 7):
        chunk = records[offset:offset + 7]
        by_offset[offset] = Decoded(
            spans=tuple(r for r in chunk if isinstance(r, LLMSpan)),
            evals=tuple(r for r in chunk if isinstance(r, EvalResult)), raw_span_count=7)
        items.append(KafkaSourceMessage(key=None, value=b"x", topic="spans",
                                        partition=offset % 2, offset=offset))
    out = decode_batch(cast(Decoder, _StubDecoder(by_offset)), items)
    assert not [value for value in out if isinstance(value, DeadLetter)]
    batches = [value for value in out if not isinstance(value, DeadLetter)]
    assert [key for key, _ in batches] == list(ASSEMBLY_KEYS), "every shard gets the progress"
    newest = {p: max(event_unix_ns(r) for o, d in by_offset.items() if o % 2 == int(p[0])
                     for r in _records_of(d)) for p in ("0-spans", "1-spans")}
    regrouped: list[Record] = []
    for key, batch in batches:
        assert batch.shard == key
        assert all(trace_shard(r.trace_id) == key for r in batch.items)
        assert {p.partition: p.max_event_unix_ns for p in batch.progress} == newest
        regrouped.extend(batch.items)
    # Every record once, in the item path's order within its shard: message by message, its
    # spans, then its evals.
    assert sorted(map(id, regrouped)) == sorted(map(id, records))
    decoded: list[Record] = [r for _, d in sorted(by_offset.items()) for r in _records_of(d)]
    for key, batch in batches:
        assert list(batch.items) == [r for r in decoded if trace_shard(r.trace_id) == key]


# --- LabelKeys ----------------------------------------------------------------------------------

_label = st.one_of(st.none(), st.sampled_from(["", "a", "b", "prod", "gpt-4o"]))


@st.composite
def _records(draw: st.DrawFn) -> LLMSpan | EvalResult:
    context = TraceContext(
        service=draw(_label), environment=draw(_label), app_version=draw(_label),
        prompt_template_version=draw(_label), model_version=draw(_label),
        user_segment=draw(_label), endpoint=draw(_label), session_id=draw(_label))
    if draw(st.booleans()):
        return EvalResult(trace_id="t", span_id="s", at_unix_ns=T0,
                          score=EvalScore("helpfulness", 0.5), context=context,
                          model=draw(_label), provider=draw(_label))
    return LLMSpan(trace_id="t", span_id="s", parent_span_id=None,
                   kind=draw(st.sampled_from(["llm", "embedding", "request", "retrieval"])),
                   name="n", start_unix_ns=T0, end_unix_ns=T0 + S, context=context,
                   operation=draw(_label), provider=draw(_label),
                   request_model=draw(_label), response_model=draw(_label))


def _key_functions() -> list[KeyFunction]:
    """The exactness rules' families, and series over every label and over none."""
    return [*(family.key_of for family in families(exact_rules())),
            functools.partial(series_key, group_by=LABELS),
            functools.partial(series_key, group_by=())]


_FUNCTIONS = _key_functions()


@settings(max_examples=300)
@given(st.lists(_records(), min_size=1, max_size=12), st.integers(1, 4))
def test_label_keys_give_the_family_keys_of_the_generic_path(
        records: list[LLMSpan | EvalResult], max_entries: int) -> None:
    functions = _FUNCTIONS
    keys_of = LabelKeys(functions, max_entries=max_entries)
    for record in records:  # one memo across records: a stale entry would show here
        assert keys_of(record) == tuple(f(record) for f in functions)


_CONTEXT_LABELS = ("service", "environment", "app_version", "prompt_template_version",
                   "model_version", "user_segment", "endpoint")
_SPAN_LABELS = ("request_model", "response_model", "operation", "provider", "kind")


@settings(max_examples=200)
@given(_records(), st.sampled_from(_CONTEXT_LABELS + _SPAN_LABELS))
def test_label_keys_notice_a_changed_label_value(record: LLMSpan | EvalResult,
                                                 name: str) -> None:
    """Every field a label is read from is part of the memo key: a record that differs from a
    memoised one in that field alone gets its own keys."""
    functions = _FUNCTIONS
    keys_of = LabelKeys(functions)
    keys_of(record)
    changed: LLMSpan | EvalResult
    change: dict[str, Any] = {name: "changed" if name != "kind" else "embedding"}
    if isinstance(record, LLMSpan) and name == "kind" and record.kind == "embedding":
        change[name] = "llm"
    if name in _CONTEXT_LABELS:
        changed = replace(record, context=replace(record.context, **change))
    elif isinstance(record, EvalResult):
        eval_change: dict[str, Any] = {name if name == "provider" else "model": "changed"}
        changed = replace(record, **eval_change)
    else:
        changed = replace(record, **change)
    assert keys_of(changed) == tuple(f(changed) for f in functions)
    assert keys_of(record) == tuple(f(record) for f in functions)


@pytest.mark.parametrize("name", _CONTEXT_LABELS + _SPAN_LABELS)
def test_label_keys_read_every_label_field(name: str) -> None:
    """The same check without search: from a span with no labels set, each field alone."""
    bare = LLMSpan(trace_id="t", span_id="s", parent_span_id=None, kind="llm", name="n",
                   start_unix_ns=T0, end_unix_ns=T0 + S, context=TraceContext())
    change: dict[str, Any] = {name: "embedding" if name == "kind" else "changed"}
    changed = (replace(bare, context=replace(bare.context, **change))
               if name in _CONTEXT_LABELS else replace(bare, **change))
    keys_of = LabelKeys(_FUNCTIONS)
    assert keys_of(bare) == tuple(f(bare) for f in _FUNCTIONS)
    assert keys_of(changed) == tuple(f(changed) for f in _FUNCTIONS) != keys_of(bare)


def test_preaggregation_with_label_keys_equals_the_generic_path() -> None:
    records = _traces(random.Random(9), 80, 180)
    functions = [family.key_of for family in families(exact_rules())]
    generic = preaggregate_each(records, functions)
    assert generic
    assert preaggregate_each(records, functions, keys_of=LabelKeys(functions)) == generic


# --- the slot copy of a span with a new context -------------------------------------------------

_text = st.one_of(st.none(), st.text(max_size=4))


@st.composite
def _spans(draw: st.DrawFn) -> LLMSpan:
    return LLMSpan(
        trace_id=draw(st.text(max_size=4)), span_id=draw(st.text(max_size=4)),
        parent_span_id=draw(_text), kind=draw(st.sampled_from(["llm", "request"])),
        name=draw(st.text(max_size=4)), start_unix_ns=draw(st.integers(0, 2**62)),
        end_unix_ns=draw(st.integers(0, 2**62)),
        context=TraceContext(service=draw(_text), session_id=draw(_text)),
        operation=draw(_text), provider=draw(_text), request_model=draw(_text),
        response_model=draw(_text), input_tokens=draw(st.none() | st.integers(0, 10**6)),
        output_tokens=draw(st.none() | st.integers(0, 10**6)),
        time_to_first_token_s=draw(st.none() | st.floats(0, 100)),
        is_streaming=draw(st.none() | st.booleans()),
        finish_reasons=tuple(draw(st.lists(st.text(max_size=3), max_size=2))),
        is_error=draw(st.booleans()), http_status=draw(st.none() | st.integers(100, 599)),
        is_refusal=draw(st.booleans()),
        feedback=draw(st.sampled_from([None, "positive", "negative"])),
        evals=tuple(EvalScore(n, v, None) for n, v in draw(st.lists(
            st.tuples(st.text(max_size=3), st.floats(0, 1)), max_size=2))),
        cost_usd=draw(st.none() | st.floats(0, 10)),
        unknown_cost_reason=draw(_text))


def test_the_fast_slot_copy_is_in_use() -> None:
    """LLMSpan has slots and no __post_init__: the assembler must take the fast path (else the
    equality test below would compare `replace` with itself)."""
    assert assembly._WITH_CONTEXT is not None


@settings(max_examples=200)
@given(_spans(), st.builds(TraceContext, service=_text, environment=_text,
                           session_id=_text, user_segment=_text))
def test_the_slot_copy_equals_dataclasses_replace(span: LLMSpan, context: TraceContext) -> None:
    copy_with = assembly._WITH_CONTEXT
    assert copy_with is not None
    before = pickle.dumps(span)
    fast, slow = copy_with(span, context), replace(span, context=context)
    assert type(fast) is LLMSpan
    for f in fields(LLMSpan):
        assert getattr(fast, f.name) == getattr(slow, f.name), f.name
    assert fast == slow and hash(fast) == hash(slow)
    assert fast.context is context
    assert pickle.dumps(span) == before, "the original span changed"
    thawed = pickle.loads(pickle.dumps(fast))  # noqa: S301 - own bytes
    assert thawed == slow and hash(thawed) == hash(slow)


def test_completing_a_span_with_nothing_to_add_keeps_the_span() -> None:
    span = LLMSpan(trace_id="t", span_id="s", parent_span_id=None, kind="llm", name="n",
                   start_unix_ns=T0, end_unix_ns=T0 + S,
                   context=TraceContext(service="bot", session_id="s1"))
    assert assembly._completed(span, TraceContext(service="other")) is span
    filled = assembly._completed(span, TraceContext(user_segment="pro"))
    assert filled.context == TraceContext(service="bot", session_id="s1", user_segment="pro")
    assert replace(filled, context=span.context) == span
