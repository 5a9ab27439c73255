"""The batched flow steps (one `Batch` per shard and source batch instead of one item per span)
against independent expectations: every record assembled once, labelled from a root that came
before it, progress never ahead of held records; partials those of the generic
pre-aggregation, on the shard that owns their series; windows that close exactly what came in
time. And the cheaper pieces they rest on (`LabelKeys`, the slot copy of a span's context) must
agree with the generic code they replace.
"""

from __future__ import annotations

import functools
import pickle
import random
from collections import Counter
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
    WINDOW_SHARDS,
    Preaggregator,
    decode_batch,
    preaggregate_batches,
    trace_shard,
)
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
from ingest import assembly
from ingest.assembly import Record, TraceAssembler
from ingest.decode import DeadLetter, Decoded, Decoder, SourceMessage
from ingest.span import EvalResult, EvalScore, LLMSpan, TraceContext
from metrics.bucket import Bucket, event_unix_ns
from metrics.partial import KeyFunction, LabelKeys, preaggregate_each
from metrics.series import LABELS, SeriesKey, series_key
from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute
from rules.evaluate import RuleEvaluator
from rules.families import Family, families, series_needs
from rules.lifecycle import AlertLifecycle
from rules.silences import Matcher
from tests.fakes.needs import as_needed
from tests.flows.cluster_flow import exact_rules

S = 1_000_000_000
T0 = 1_764_201_600 * S  # a minute boundary
WAIT_NS = 30 * S
SHARD = "a0"
PARTITION = "0-spans"
WALL0 = 1_800_000_000 * S  # a fixed read clock: every run sees the same wall times


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
    so far; the `Batch` it travels in addresses it to assembly shard a0)."""
    out: list[tuple[list[Record], Progress]] = []
    newest = -1
    for start in range(0, len(records), size):
        chunk = records[start:start + size]
        newest = max(newest, *(event_unix_ns(r) for r in chunk))
        out.append((chunk, Progress(PARTITION, newest, WALL0 + start * S // 10)))
    return out


def _assembly() -> AssemblyLogic:
    policy = WatermarkPolicy((PARTITION,), idle_timeout=timedelta(seconds=30),
                             allowed_lateness=timedelta(0))
    return AssemblyLogic(AssemblyState(
        TraceAssembler(wait_ns=WAIT_NS, max_open_traces=40, max_finished_traces=1000,
                       own_clock=False),
        new_watermark(policy, timedelta(0))))


def _run(batches: list[tuple[list[Record], Progress]], *, split: bool = False
         ) -> list[list[Batch[Record]]]:
    """The source batches through an assembly step, one call each (with `split`, as two
    `Batch`es: the first records without progress, then the rest with it), then end of input:
    what each call sent."""
    step = _assembly()
    sent: list[list[Batch[Record]]] = []
    for records, progress in batches:
        half = len(records) // 2
        values = ([Batch(SHARD, records[:half]), Batch(SHARD, records[half:], (progress,))]
                  if split else [Batch(SHARD, records, (progress,))])
        out, done = step.on_batch(values)
        assert not done
        sent.append(list(out))
    sent.append(list(step.on_eof()[0]))
    return sent


def _batches(seed: int) -> list[tuple[list[Record], Progress]]:
    rng = random.Random(seed)
    return _source_batches(_traces(rng, 60, 150), rng.randint(5, 40))


# --- assembly -----------------------------------------------------------------------------------

def _identity(record: Record) -> tuple[str, str, str | None, int]:
    return type(record).__name__, record.trace_id, record.span_id, event_unix_ns(record)


def test_assembly_sends_every_record_once_labelled_from_a_root_that_came_before() -> None:
    """Every record comes out exactly once; an LLM call released after its root arrived carries
    the root's session, one released before its root arrived carries none."""
    labelled = unlabelled = 0
    for seed in range(4):
        batches = _batches(seed)
        root_at: dict[str, tuple[int, str | None]] = {}
        """Trace -> (call its root arrived in, the root's session)."""
        for call, (records, _) in enumerate(batches):
            for r in records:
                if isinstance(r, LLMSpan) and r.parent_span_id is None:
                    root_at[r.trace_id] = (call, r.context.session_id)
        sent = _run(batches)
        released: list[tuple[int, Record]] = [(call, r) for call, out in enumerate(sent)
                                              for batch in out for r in batch.items]
        assert Counter(_identity(r) for _, r in released) == Counter(
            _identity(r) for records, _ in batches for r in records)
        assert any(isinstance(r, EvalResult) for _, r in released)
        for call, r in released:
            if not (isinstance(r, LLMSpan) and r.kind == "llm"):
                continue
            root_call, session = root_at[r.trace_id]
            if root_call < call:
                assert r.context.session_id == session, r
                labelled += 1
            elif root_call > call:
                assert r.context.session_id is None, r
                unlabelled += 1
    # Not vacuous: calls were labelled from their root, and some (whose root came after the
    # wait) were released without it.
    assert labelled and unlabelled


def test_a_call_split_into_several_batches_sends_what_one_batch_sends() -> None:
    """The flow hands a step several `Batch`es per call: records are added batch by batch, in
    order, as if they had come in one."""
    for seed in range(4):
        batches = _batches(seed)
        assert _run(batches, split=True) == _run(batches)


def test_an_assembly_step_sends_at_most_one_batch_per_call_addressed_to_its_shard() -> None:
    for out in _run(_batches(11)):
        assert len(out) <= 1
        assert all(b.shard == SHARD for b in out)


def test_progress_in_a_batch_is_never_ahead_of_its_records() -> None:
    """Forwarded progress must not pass a record still held upstream: until a held record is
    released, progress stays within its event time plus the wait (or the stream time it
    arrived at, if it came that late). Records of a Batch travel ahead of its progress."""
    capped = 0
    for seed in range(4):
        batches = _batches(seed)
        step = _assembly()
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


Totals = tuple[int, int, int, int]


def _totals(bucket: Bucket) -> Totals:
    return bucket.records, bucket.requests, bucket.request_errors, bucket.spans


def _add(into: dict[tuple[str, SeriesKey, int], Totals], key: tuple[str, SeriesKey, int],
         totals: Totals) -> None:
    old = into.get(key, (0, 0, 0, 0))
    into[key] = (old[0] + totals[0], old[1] + totals[1], old[2] + totals[2], old[3] + totals[3])


def test_preaggregated_batches_go_to_their_shards_and_close_every_record_in_time() -> None:
    """Each window shard's `Batch` holds the generic pre-aggregation's partials of the series it
    owns (in order) and the newest forwarded progress; the window steps close, per series and
    minute, exactly those partials, except the ones whose minute had already closed when they
    came (counted `too_late`)."""
    # Not vacuous: some roots come after the wait, some of them after their minute closed.
    assert sum(_windows_close_what_came_in_time(seed) for seed in (0, 3)) > 0


def _windows_close_what_came_in_time(seed: int) -> int:
    """The check above for one traffic seed; how many records came too late."""
    rules = exact_rules()
    every = families(rules)
    functions = [family.key_of for family in every]
    steps, closed = _window_steps((forwarded(PARTITION, SHARD),))
    preaggregator = Preaggregator(lambda: rules)
    expected: dict[tuple[str, SeriesKey, int], Totals] = {}
    too_late = dict.fromkeys(WINDOW_KEYS, 0)
    for out in _run(_batches(seed)):
        records = [r for batch in out for r in batch.items]
        progress = [p for batch in out for p in batch.progress]
        assert len({p.partition for p in progress}) <= 1
        newest = tuple(sorted(progress, key=lambda p: p.max_event_unix_ns)[-1:])
        # Series get the sessions and sketches their rules read (`tests/flows/test_series_needs`)
        needs = series_needs(rules, every)
        generic = [(i, as_needed(p, needs[i])) for i, p in preaggregate_each(records, functions)]
        owned = {key: [p for i, p in generic
                       if WINDOW_KEYS[every[i].shard_of(p.key, WINDOW_SHARDS)] == key]
                 for key in WINDOW_KEYS}
        by_batch = preaggregate_batches(preaggregator, out)
        assert {key: (list(b.items), b.progress, b.shard) for key, b in by_batch} == {
            key: (owned[key], newest, key) for key in WINDOW_KEYS if owned[key] or newest}
        for key, batch in by_batch:
            closed_until = steps[key].snapshot().windows.closed_until_unix_ns
            for p in batch.items:
                if closed_until is not None and p.minute_start_unix_ns < closed_until:
                    too_late[key] += p.records
                else:
                    _add(expected, (key, p.key, p.minute_start_unix_ns), _totals(p.bucket))
            steps[key].on_batch([batch])
    got: dict[tuple[str, SeriesKey, int], Totals] = {}
    for key, step in steps.items():
        step.on_eof()
        for minute in closed[key]:
            if not minute.is_empty:
                _add(got, (key, minute.key, minute.minute_start_unix_ns), _totals(minute.bucket))
        assert step.snapshot().windows.late.counts["too_late"] == too_late[key]
    assert len(expected) > 10
    assert got == expected
    return sum(too_late.values())


# --- decode -------------------------------------------------------------------------------------

class _StubDecoder:
    """Decodes a message to the records stored under its offset."""

    def __init__(self, by_offset: dict[int, Decoded]) -> None:
        self._by_offset = by_offset

    def decode_fast(self, topic: str, value: bytes | None) -> None:
        return None  # everything the generic way

    def decode_generic(self, message: SourceMessage) -> Decoded:
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


_FILTERED = Family(("service",), None, (Matcher.of("environment", "=", "prod"),), "f1")
"""A family reading a label beyond its series' (its filter's)."""
_SOME_LABELS = [family.key_of for family in families(exact_rules())] + [
    _FILTERED.key_of, functools.partial(series_key, group_by=("endpoint",)),
    functools.partial(series_key, group_by=())]
_READ = ("service", "model", "environment", "endpoint")


@settings(max_examples=300)
@given(st.lists(_records(), min_size=1, max_size=12), st.integers(1, 4))
def test_label_keys_of_the_labels_read_give_the_family_keys(
        records: list[LLMSpan | EvalResult], max_entries: int) -> None:
    assert set(_FILTERED.labels) | {"model", "endpoint"} == set(_READ)
    keys_of = LabelKeys(_SOME_LABELS, max_entries=max_entries, labels=_READ)
    for record in records:
        assert keys_of(record) == tuple(f(record) for f in _SOME_LABELS)


def test_label_keys_of_the_labels_read_share_entries_across_unread_labels() -> None:
    """Records that differ only in labels no key function reads are keyed once; a read label
    still tells them apart."""
    span = LLMSpan(trace_id="t", span_id="s", parent_span_id=None, kind="llm", name="n",
                   start_unix_ns=T0, end_unix_ns=T0 + S,
                   context=TraceContext(service="a", environment="prod", user_segment="free"))
    other_segment = replace(span, context=replace(span.context, user_segment="pro"),
                            operation="chat")
    staging = replace(span, context=replace(span.context, environment="staging"))
    calls: Counter[str] = Counter()

    def counted(labels: tuple[str, ...] | None) -> LabelKeys:
        def count(record: LLMSpan | EvalResult) -> SeriesKey | None:
            calls[str(labels)] += 1
            return _SOME_LABELS[0](record)
        return LabelKeys([count, *_SOME_LABELS[1:]], labels=labels)

    narrow, every_label = counted(_READ), counted(None)
    for record in (span, other_segment, staging):
        assert narrow(record) == every_label(record) == tuple(f(record) for f in _SOME_LABELS)
    assert calls == {str(_READ): 2, "None": 3}


def test_label_keys_refuse_unknown_labels() -> None:
    with pytest.raises(ValueError, match="'colour'"):
        LabelKeys(_SOME_LABELS, labels=("service", "colour"))


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


@settings(max_examples=200)
@given(_spans(), st.builds(TraceContext, service=_text, environment=_text,
                           session_id=_text, user_segment=_text))
def test_the_slot_copy_equals_dataclasses_replace(span: LLMSpan, context: TraceContext) -> None:
    before = pickle.dumps(span)
    fast, slow = span.with_context(context), replace(span, context=context)
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
