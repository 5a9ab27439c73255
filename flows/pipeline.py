"""The spanwatch dataflow. Only wiring lives here; every step calls a stage package.

    Kafka -> decode (bad message -> DLQ) -> trace assembly (key: trace shard)
          -> pre-aggregate per (series, minute), a worker's round of source batches at once
             (`PreaggregateLogic`, on the assembly keys' worker) -> windows + rules +
             lifecycle (key: series shard) -> inhibition, silences, grouping (key: "alerts")
          -> sinks

Event time: decode emits a `Progress` per source partition and batch, broadcast to every
assembly shard; each assembly shard forwards it, behind the records it released, to every
window shard. (Steps exchange one `Batch` per shard and batch, records first and progress
behind them, not one item per span.) So each shard computes the same watermark (the minimum
over all source partitions), a partition running ahead cannot close another's minutes, and
progress never overtakes records still in flight through assembly (a backlog read in large
batches would otherwise close minutes before their records arrive). Step ids are stable:
recovery state is stored under them.
"""

from __future__ import annotations

import gc
import os
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import countOf, itemgetter
from typing import Any, TypeVar, cast, get_args

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from flows import instruments
from flows.kafka_io import (
    KafkaItem,
    build_dead_letter_sink,
    build_source,
    to_dead_letter_message,
    to_source_message,
)
from flows.steps import (
    AlertRoutingLogic,
    AssemblyLogic,
    AssemblyState,
    Batch,
    Progress,
    RoutingState,
    WatermarkPolicy,
    WindowIn,
    WindowLogic,
    WindowState,
    forwarded,
    group_policies,
    new_watermark,
)
from ingest.assembly import Record, TraceAssembler
from ingest.decode import DeadLetter, Decoded, Decoder
from ingest.span import EvalResult, LLMSpan, SpanKind
from metrics.bucket import event_unix_ns
from metrics.partial import LabelKeys, Partial, preaggregate_slots
from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute
from rules.config import RulesConfig
from rules.evaluate import RuleEvaluator
from rules.families import Family, families, series_needs
from rules.grouping import AlertGroup, Grouper
from rules.inhibition import Inhibitor, IsSilenced
from rules.lifecycle import AlertLifecycle
from rules.records import AlertEvent
from spanwatch.settings import Settings

ASSEMBLY_SHARDS = 16
WINDOW_SHARDS = 16
"""State is split into this many keys per step (spread over workers by Bytewax)."""
ASSEMBLY_KEYS = ("a0.25", "a1.14", "a2.24", "a3.5", "a4.10", "a5.20", "a6.38", "a7.6", "a8.36",
                 "a9.49", "a10.23", "a11.27", "a12.35", "a13.53", "a14.24", "a15.18")
"""Bytewax puts a key on worker `hash(key) % workers` (SipHash-1-3 of the string; a mask for
a power of two): `a0`..`a15` put 12 of 16 assembly shards, so 3/4 of the spans and of the
pre-aggregation, on one of 2 workers (9 on one of 4). These suffixes were searched so key i
lands on worker i % n for n = 1, 2, 3, 4, 6, 8 (tests/flows/test_key_placement.py). Renaming
them drops nothing: assembly state lives for the assembly wait (a restored window watermark
waits once, for the idle timeout, on the old names' forwarded progress)."""
WINDOW_KEYS = tuple(f"w{i}" for i in range(WINDOW_SHARDS))
"""8 and 8 on 2 workers (not even on 3 or more; renaming them would orphan recovered series)."""

Keyed = tuple[str, Any]


@dataclass(frozen=True)
class FlowSinks:
    """Where the flow's outputs go; only `groups` is required in production."""

    groups: Sink[AlertGroup]
    events: Sink[AlertEvent] | None = None
    records: Sink[Record] | None = None
    dead_letters: Sink[Any] | None = None


@dataclass(frozen=True)
class FlowOptions:
    partitions: tuple[str, ...]
    """Source partitions the watermark waits for (`<partition>-<topic>` as Bytewax names them)."""
    tail: bool = True
    source: Source[Any] | None = None
    is_silenced: IsSilenced | None = None
    on_closed: Callable[[int], None] | None = field(default=None)
    on_closed_minutes: Callable[[list[ClosedMinute]], None] | None = field(default=None)
    """Called with the minutes each window shard closes (tests, audits; read-only)."""
    live_rules: Callable[[], RulesConfig] | None = None
    """Hot reload: returns the current rules (a new object after a valid change); without it
    the rules given to `build_flow` stay in force."""


def trace_shard(trace_id: str) -> str:
    return ASSEMBLY_KEYS[_shard_index(trace_id)]


def partition_key(topic: str, partition: int) -> str:
    return f"{partition}-{topic}"


def decode_batch(decoder: Decoder, items: list[KafkaItem]
                 ) -> list[DeadLetter | tuple[str, Batch[Record]]]:
    """Decode a source batch: dead letters, then one `Batch` per assembly shard with the
    shard's records and the batch's progress (every shard gets the progress, records or not)."""
    out: list[DeadLetter | tuple[str, Batch[Record]]] = []
    progress: dict[str, int] = {}
    by_shard: list[list[Record]] = [[] for _ in ASSEMBLY_KEYS]
    # Trace id -> its shard's `append`, for this batch (a trace's spans usually arrive together)
    add_to: dict[str, Callable[[Record], None]] = {}
    kept: list[LLMSpan] = []  # the batch's spans, tallied by kind and cost reason at the end
    decoded = dead = ignored = evaluations = 0
    decode_fast = decoder.decode_fast
    last_trace: str | None = None
    add = by_shard[0].append
    for item in items:
        # A Kafka message the fast path takes needs no `SourceMessage` or `Decoded`; anything
        # else (consumer errors, other encodings, messages it declines) goes the generic way.
        fast = None
        if not isinstance(item, KafkaError):
            topic = item.topic or ""  # as `to_source_message` reads it
            partition = partition_key(topic, item.partition or 0)
            fast = decode_fast(topic, item.value)
        spans: Sequence[LLMSpan]
        evals: Sequence[EvalResult]
        if fast is not None:
            spans, evals, raw_span_count = fast
        else:
            result = _decode_generic(decoder, item)
            if isinstance(result, DeadLetter):
                dead += 1
                out.append(result)
                continue
            partition, generic = result
            spans, evals, raw_span_count = generic.spans, generic.evals, generic.raw_span_count
        decoded += 1
        ignored += raw_span_count - len(spans)
        kept += spans
        newest = progress.get(partition, -1)
        # Spans, then evaluations; event time read directly (a span's end, an evaluation's
        # time, as `event_unix_ns`). The fast path gives neighbouring spans of a trace the same
        # id string, so most spans skip the lookup.
        for span in spans:
            trace_id = span.trace_id
            if trace_id is not last_trace:
                last_trace = trace_id
                found = add_to.get(trace_id)
                if found is None:
                    found = add_to[trace_id] = by_shard[_shard_index(trace_id)].append
                add = found
            add(span)
        if spans:  # slot reads in a comprehension: cheaper than `map(attrgetter(...))`
            newest = max(newest, *[span.end_unix_ns for span in spans])
        if evals:
            evaluations += len(evals)
            newest = _add_evals(evals, add_to, by_shard, newest)
        if newest >= 0:
            progress[partition] = newest
    _add_counts(decoded, dead, ignored, evaluations, kept)
    wall = _wall_ns()
    sent = tuple(Progress(partition, at, wall) for partition, at in progress.items())
    out.extend((key, Batch(key, records, sent))
               for key, records in zip(ASSEMBLY_KEYS, by_shard, strict=True) if records or sent)
    return out


def _decode_generic(decoder: Decoder, item: KafkaItem) -> tuple[str, Decoded] | DeadLetter:
    """An item the fast path does not take, with the partition key of its source."""
    message = to_source_message(item)
    if isinstance(message, DeadLetter):
        return message
    result = decoder.decode_generic(message)
    if isinstance(result, DeadLetter):
        return result
    return partition_key(message.topic, message.partition), result


def _add_evals(evals: Sequence[EvalResult], add_to: dict[str, Callable[[Record], None]],
               by_shard: list[list[Record]], newest: int) -> int:
    """`decode_batch`'s placement of a message's evaluations; the newest event time."""
    for evaluation in evals:
        trace_id = evaluation.trace_id
        found = add_to.get(trace_id)
        if found is None:
            found = add_to[trace_id] = by_shard[_shard_index(trace_id)].append
        found(evaluation)
        newest = max(newest, event_unix_ns(evaluation))
    return newest


def _shard_index(trace_id: str) -> int:
    return zlib.crc32(trace_id.encode()) % ASSEMBLY_SHARDS


def _add_counts(decoded: int, dead: int, ignored: int, evaluations: int,
                spans: list[LLMSpan]) -> None:
    """A batch's counts added to the counters, once per batch and label (a labelled counter
    update costs about as much as decoding a span)."""
    if ignored:
        instruments.SPANS_DROPPED.inc(ignored)
    # Slot reads in comprehensions, not `list(map(attrgetter(...)))`: with the end times in
    # `decode_batch`, about 440 fewer instructions per span (callgrind, bench traffic)
    for kind, count in tally([span.kind for span in spans], _KINDS).items():
        instruments.SPANS.labels(kind).inc(count)
    # Spans of known cost have no reason (None is no label)
    reasons = [reason for span in spans if (reason := span.unknown_cost_reason) is not None]
    if reasons:
        for reason, count in tally(reasons, ()).items():
            instruments.UNKNOWN_COST.labels(reason).inc(count)
    if evaluations:
        instruments.EVALS.inc(evaluations)
    if decoded:
        instruments.MESSAGES.labels("decoded").inc(decoded)
    if dead:
        instruments.MESSAGES.labels("dead_lettered").inc(dead)


_T = TypeVar("_T")


def tally(values: list[_T], expected: Sequence[_T]) -> dict[_T, int]:
    """`dict(Counter(values))` (counts in first-seen order), counted by one C scan per
    `expected` value (`operator.countOf`) instead of a dict update per item: when the values
    are few known ones (span kinds), that is about a third of the work. Any other value in
    `values` falls back to `Counter`."""
    counts = [(values.index(value), value, count) for value in expected
              if (count := countOf(values, value))]
    if sum(count for _, _, count in counts) != len(values):
        return dict(Counter(values))
    return {value: count for _, value, count in sorted(counts, key=itemgetter(0))}


_KINDS: tuple[SpanKind, ...] = get_args(SpanKind)


def _wall_ns() -> int:
    import time  # noqa: PLC0415 - the only clock read of this module, kept visible

    return time.time_ns()


class Preaggregator:
    """Pre-aggregation for the window stage under the current rules: their families, with
    series keys memoised by label values and shards by series (rebuilt on a hot reload).
    Shared by the workers of a process: its memos are plain dicts, safe under the GIL."""

    def __init__(self, rules: Callable[[], RulesConfig]) -> None:
        self._rules = rules
        self._config: RulesConfig | None = None
        self._every: tuple[Family, ...] = ()
        self._keys_of = LabelKeys([])
        self._ids = self._keys_of.ids
        self._shards: dict[int, int] = {}
        """Window shard by slot id of `_ids` (an int: hashing series keys per partial cost
        more than the lookup saved)."""

    def partials(self, records: list[Record]) -> list[tuple[int, Partial]]:
        """One partial bucket per (rule family, series, minute) of `records`, with the index of
        the window shard that owns the series."""
        config = self._rules()
        if config is not self._config:
            self._config, self._every = config, families(config)
            self._keys_of = LabelKeys(
                [family.key_of for family in self._every],
                labels={name for family in self._every for name in family.labels},
                needs=series_needs(config, self._every))
        slotted = preaggregate_slots(records, self._keys_of)
        if self._keys_of.ids is not self._ids:  # new keys or ids started afresh
            self._ids, self._shards = self._keys_of.ids, {}
        shards, out = self._shards, []
        for slot_id, partial in slotted:
            shard = shards.get(slot_id)
            if shard is None:
                index, key = self._ids.slot_keys[slot_id]
                shard = shards[slot_id] = self._every[index].shard_of(key, WINDOW_SHARDS)
            out.append((shard, partial))
        return out


def _newest(progress: Iterable[Progress]) -> list[Progress]:
    """The furthest progress per partition, in first-seen order."""
    newest: dict[str, Progress] = {}
    for item in progress:
        old = newest.get(item.partition)
        if old is None or item.max_event_unix_ns > old.max_event_unix_ns:
            newest[item.partition] = item
    return list(newest.values())


def preaggregate_batches(preaggregator: Preaggregator,
                         batch: Sequence[Batch[Record]]) -> list[tuple[str, Batch[Partial]]]:
    """One partial bucket per (rule family, series, minute) of the records of assembly output
    `Batch`es, as one `Batch` per window shard with the partials of the series it owns, then
    the newest forwarded progress of each partition (every window shard gets it)."""
    records: list[Record] = []
    for item in batch:
        records.extend(item.items)
    by_shard: list[list[Partial]] = [[] for _ in WINDOW_KEYS]
    for shard, partial in preaggregator.partials(records):
        by_shard[shard].append(partial)
    progress = tuple(_newest(p for item in batch for p in item.progress))
    return [(key, Batch(key, partials, progress))
            for key, partials in zip(WINDOW_KEYS, by_shard, strict=True)
            if partials or progress]


HOLD_MIN_RECORDS = 1_000
"""Assembled records a worker holds back from pre-aggregation at least, while it waits for the
rest of the round (see `PreaggregateLogic`); fewer go on at once, as they always did."""
HOLD_MAX = timedelta(seconds=1)
"""Longest a worker holds assembled records waiting for the other source partitions."""
QUIET_PARTITION = timedelta(seconds=10)
"""A source partition without progress this long is not waited for (until it reports)."""


BatchId = tuple[str, int]
"""A held batch's (worker run, sequence number): see `HeldState`."""


@dataclass(frozen=True)
class HeldState:
    """A pre-aggregation key's snapshot: the batches it added that are still held, with their
    ids, and how far each worker run had pre-aggregated (`flushed`). A key that was not woken
    in the epoch another key pre-aggregated its batches keeps an older snapshot; restored, its
    batches that `flushed` (of any key's newer snapshot) covers are dropped, not sent again."""

    batches: tuple[tuple[BatchId, Batch[Record]], ...]
    flushed: dict[str, int]


class HeldRecords:
    """One worker's assembled batches waiting to be pre-aggregated together, and when to stop
    waiting (`PreaggregateLogic`). Shared by the worker's keys; the clock is the caller's."""

    def __init__(self, partitions: Iterable[str], now: datetime) -> None:
        self.batches: list[Batch[Record]] = []
        self.ids: list[BatchId] = []
        self.records = 0
        self.since: datetime | None = None
        """When the oldest held batch arrived (None: nothing held)."""
        self.due: datetime | None = None
        """When to look at the held batches next (None: nothing held)."""
        self.flushed: dict[str, int] = {}
        """Highest sequence number pre-aggregated, per worker run (all lower ones were too)."""
        self._run = os.urandom(8).hex()
        self._next = 0
        self._seen: set[str] = set()
        """Source partitions whose progress the held batches carry."""
        self._heard = dict.fromkeys(partitions, now)
        """When each source partition last reported (at start: the start)."""

    def add(self, batches: Iterable[Batch[Record]], now: datetime) -> None:
        for batch in batches:
            self._add(batch, (self._run, self._next))
            self._next += 1
        self._touch(now)

    def restore(self, state: HeldState, now: datetime) -> None:
        for run, seq in state.flushed.items():
            self.flushed[run] = max(seq, self.flushed.get(run, -1))
        for batch_id, batch in state.batches:
            self._add(batch, batch_id)
        # Keys are restored in any order: back to arrival order (a run's sequence), this run's
        # own batches last.
        order = sorted(range(len(self.ids)),
                       key=lambda i: (self.ids[i][0] == self._run, self.ids[i]))
        self.batches = [self.batches[i] for i in order]
        self.ids = [self.ids[i] for i in order]
        self._touch(now)

    def _add(self, batch: Batch[Record], batch_id: BatchId) -> None:
        self.batches.append(batch)
        self.ids.append(batch_id)
        self.records += len(batch.items)
        for progress in batch.progress:
            self._seen.add(_source_of(progress.partition))

    def _touch(self, now: datetime) -> None:
        for source in self._seen:
            self._heard[source] = now
        if self.batches:
            self.since = self.since or now
            self.due = now

    def wait_until(self, now: datetime) -> datetime | None:
        """Until when to keep holding, or None to pre-aggregate now: few records, a full
        round of the partitions that report, or held for `HOLD_MAX`."""
        if self.since is None or self.records < HOLD_MIN_RECORDS:
            return None
        until = self.since + HOLD_MAX
        if now >= until:
            return None
        waiting = any(source not in self._seen and now - heard < QUIET_PARTITION
                      for source, heard in self._heard.items())
        return until if waiting else None

    def take(self) -> list[Batch[Record]]:
        """The held batches, in order, but any a restored older snapshot held again although
        they had been pre-aggregated (`HeldState`)."""
        flushed = self.flushed
        out = [batch for (run, seq), batch in zip(self.ids, self.batches, strict=True)
               if seq > flushed.get(run, -1)]
        for run, seq in self.ids:
            flushed[run] = max(seq, flushed.get(run, -1))
        self.batches, self.ids, self.records, self.since, self.due = [], [], 0, None, None
        self._seen = set()
        return out

    def state_of(self, key: str) -> HeldState:
        return HeldState(tuple((batch_id, batch) for batch_id, batch
                               in zip(self.ids, self.batches, strict=True)
                               if batch.shard == key), dict(self.flushed))


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PreaggregateLogic(StatefulBatchLogic[Batch[Record], Keyed, HeldState]):
    """Pre-aggregation of one worker's assembled records, by (rule family, series, minute).

    A partial is made per series and minute of each pre-aggregation call, so a worker that
    pre-aggregated each arrival on its own would send a series' minute several times: in a
    cluster, the records a worker assembles arrive in one batch per decoding worker (its own
    first, the others' later), each touching most active series; 2 processes made 3.4 times
    the partials of one on the bench. So, under load (`HOLD_MIN_RECORDS`), a worker holds its
    assembled batches until they carry progress of every source partition that reports (a
    round of the sources, which the window watermark waits for anyway), or for `HOLD_MAX`,
    and pre-aggregates them together. Otherwise they go on at the end of the activation
    (Bytewax calls `on_notify` after every key's `on_batch`), as from a batch step. Records
    and their progress are held together, in order, so progress never overtakes records.

    The worker's `HeldRecords` is shared by its keys; each key's snapshot is the batches it
    added that are still held (`HeldState`), so recovery loses nothing held and sends nothing
    twice.
    """

    def __init__(self, preaggregator: Preaggregator, held: HeldRecords,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self._preaggregator = preaggregator
        self._held = held
        self._clock = clock
        self._key = ""

    def on_batch(self, values: list[Batch[Record]]) -> tuple[Iterable[Keyed], bool]:
        for batch in values:
            self._key = batch.shard or self._key
        self._held.add(values, self._clock())
        return [], False

    def restore(self, state: HeldState) -> None:
        for _, batch in state.batches:
            self._key = batch.shard or self._key
        self._held.restore(state, self._clock())

    def on_notify(self) -> tuple[Iterable[Keyed], bool]:
        held, now = self._held, self._clock()
        if held.due is None or held.due > now:
            return [], False  # another key pre-aggregated them, or not yet due
        until = held.wait_until(now)
        if until is not None:
            held.due = until
            return [], False
        return self._flush(), False

    def on_eof(self) -> tuple[Iterable[Keyed], bool]:
        return self._flush(), False

    def _flush(self) -> list[Keyed]:
        batches = self._held.take()
        return list(preaggregate_batches(self._preaggregator, batches)) if batches else []

    def notify_at(self) -> datetime | None:
        return self._held.due

    def snapshot(self) -> HeldState:
        return self._held.state_of(self._key)


def _source_of(forwarded_partition: str) -> str:
    """The source partition of progress an assembly shard forwarded (`forwarded`)."""
    return forwarded_partition.rpartition("@")[0] or forwarded_partition


GC_THRESHOLDS = (50_000, 20, 100)
"""Cyclic GC thresholds while a flow runs (CPython's default is (700, 10, 10)). Larger ones do
not help further: a young collection walks every container alive at the time (records held
for assembly, in-flight batches, new state), so its total cost hardly depends on how often it
runs (the bench, 50k to 1M: same seconds); a rarer older-generation pass only moves later (4x
the bench traffic: same total)."""


def tune_gc() -> None:
    """Run the cyclic garbage collector less often. The flow allocates many short-lived objects
    per span (records, plans, partials) that reference counting frees; with the default
    thresholds a young collection runs every few spans. About 12% less CPU on the bench
    traffic. Process-wide, and never lowers thresholds someone raised."""
    if gc.get_threshold()[0] < GC_THRESHOLDS[0]:
        gc.set_threshold(*GC_THRESHOLDS)


def build_flow(settings: Settings, rules: RulesConfig, sinks: FlowSinks,
               options: FlowOptions) -> Dataflow:
    """Wire the flow; the source defaults to Kafka per `settings.kafka`. Tunes the process'
    garbage collector (`tune_gc`)."""
    tune_gc()
    kafka, ingest = settings.kafka, settings.ingest
    decoder = Decoder(ingest, encoding=kafka.encoding,
                      logs_topics=[kafka.logs_topic] if kafka.logs_topic else [])
    watermark_policy = WatermarkPolicy(options.partitions, settings.idle_partition_timeout,
                                       settings.allowed_lateness)
    flow = Dataflow("spanwatch")
    items: Stream[KafkaItem] = op.input("spans_in", flow,
                                        options.source or build_source(kafka, tail=options.tail))
    decoded = op.flat_map_batch("decode", items, lambda batch: decode_batch(decoder, batch))
    split = op.branch("split_dead", decoded, lambda r: isinstance(r, DeadLetter))
    letters = cast(Stream[DeadLetter], split.trues)
    op.output("dead_letters_out", op.map("dead_letter_msg", letters, to_dead_letter_message),
              sinks.dead_letters or build_dead_letter_sink(kafka))
    keyed = cast(Stream[Keyed], split.falses)

    wait = timedelta(seconds=ingest.assembly_wait_s)

    def build_assembly(resume: AssemblyState | None) -> AssemblyLogic:
        if resume is not None:  # restored by recovery: downtime is not source idleness
            resume.watermark.resumed(_wall_ns())
        return AssemblyLogic(resume or AssemblyState(
            TraceAssembler(wait_ns=int(ingest.assembly_wait_s * 1e9),
                           max_open_traces=max(1, ingest.assembly_max_traces // ASSEMBLY_SHARDS),
                           max_finished_traces=max(1, ingest.eval_context_traces
                                                   // ASSEMBLY_SHARDS),
                           own_clock=False),
            new_watermark(watermark_policy, timedelta(0))))

    assembled_keyed = op.stateful_batch("assemble", keyed, build_assembly)
    if sinks.records is not None:
        assembled = cast(Stream[Batch[Record]], op.key_rm("assembled", assembled_keyed))
        records = op.flat_map("records_only", assembled, lambda b: b.items)
        op.output("records_out", records, sinks.records)
    current_rules = options.live_rules or (lambda: rules)
    preaggregator = Preaggregator(current_rules)
    held: dict[int, HeldRecords] = {}  # by worker thread

    def build_preaggregate(resume: HeldState | None) -> PreaggregateLogic:
        worker = held.get(threading.get_ident())
        if worker is None:
            worker = held[threading.get_ident()] = HeldRecords(options.partitions, _utc_now())
        logic = PreaggregateLogic(preaggregator, worker)
        if resume is not None:  # restored by recovery: held again, due at the next activation
            logic.restore(resume)
        return logic

    # Keyed as assembly is (the same worker: nothing crosses processes here).
    window_in = cast(Stream[tuple[str, WindowIn]], op.key_rm("preaggregated", op.stateful_batch(
        "preaggregate", assembled_keyed, build_preaggregate)))
    # The window watermark waits for every source partition as forwarded by every assembly shard.
    window_policy = WatermarkPolicy(
        tuple(forwarded(p, a) for p in options.partitions for a in ASSEMBLY_KEYS),
        settings.idle_partition_timeout, settings.allowed_lateness)

    def build_windows(resume: WindowState | None) -> WindowLogic:
        if resume is not None:
            resume.watermark.resumed(_wall_ns())
            # The snapshot holds the rules of its time; alerts.toml may have changed since.
            resume.evaluator.reconfigure(current_rules())
        # Windows close behind the source watermark by the assembly wait (records held there
        # are not late) plus the allowed lateness.
        return WindowLogic(resume or WindowState(
            ShardWindows(settings.window_config()),
            new_watermark(window_policy, wait + settings.allowed_lateness),
            RuleEvaluator(current_rules()), AlertLifecycle()), current_rules,
            options.on_closed, options.on_closed_minutes)

    window_out = op.stateful_batch("windows", window_in, build_windows)
    to_routing = op.map("to_routing", window_out, lambda kv: ("alerts", kv[1]))
    tiers = group_policies(rules)

    def build_routing(resume: RoutingState | None) -> AlertRoutingLogic:
        return AlertRoutingLogic(resume or RoutingState(
            Inhibitor(rules.inhibit, is_silenced=options.is_silenced),  # type: ignore[arg-type]
            {tier: Grouper(policy, key=f"tier{tier}") for tier, policy in tiers.items()},
            shards=WINDOW_SHARDS))

    routed = op.key_rm("routed", op.stateful_batch("route", to_routing, build_routing))
    split_out = op.branch("split_groups", routed, lambda r: isinstance(r, AlertGroup))
    op.output("groups_out", cast(Stream[AlertGroup], split_out.trues), sinks.groups)
    if sinks.events is not None:
        op.output("events_out", cast(Stream[AlertEvent], split_out.falses), sinks.events)
    return flow

