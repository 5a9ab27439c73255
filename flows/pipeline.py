"""The spanwatch dataflow. Only wiring lives here; every step calls a stage package.

    Kafka -> decode (bad message -> DLQ) -> trace assembly (key: trace shard)
          -> pre-aggregate per (series, minute) -> windows + rules + lifecycle (key: series
             shard) -> inhibition, silences, grouping (key: "alerts") -> sinks

Event time: decode emits a `Progress` per source partition and batch, broadcast to every
assembly shard; each assembly shard forwards it, behind the records it released, to every
window shard. So each shard computes the same watermark (the minimum over all source
partitions), a partition running ahead cannot close another's minutes, and progress never
overtakes records still in flight through assembly (a backlog read in large batches would
otherwise close minutes before their records arrive). Step ids are stable: recovery state is
stored under them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows import instruments
from flows.kafka_io import (
    KafkaItem,
    build_dead_letter_sink,
    build_source,
    record_offsets,
    to_dead_letter_message,
    to_source_message,
)
from flows.steps import (
    AlertRoutingLogic,
    AssemblyLogic,
    AssemblyState,
    Progress,
    RoutingState,
    WatermarkPolicy,
    WindowLogic,
    WindowState,
    forwarded,
    group_policies,
    new_watermark,
)
from ingest.assembly import Record, TraceAssembler
from ingest.decode import DeadLetter, Decoded, Decoder
from metrics.bucket import event_unix_ns
from metrics.partial import preaggregate_each
from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute
from rules.config import RulesConfig
from rules.evaluate import RuleEvaluator
from rules.families import families
from rules.grouping import AlertGroup, Grouper
from rules.inhibition import Inhibitor, IsSilenced
from rules.lifecycle import AlertLifecycle
from rules.records import AlertEvent
from spanwatch.settings import Settings

ASSEMBLY_SHARDS = 16
WINDOW_SHARDS = 16
"""State is split into this many keys per step (spread over workers by Bytewax)."""
ASSEMBLY_KEYS = tuple(f"a{i}" for i in range(ASSEMBLY_SHARDS))
WINDOW_KEYS = tuple(f"w{i}" for i in range(WINDOW_SHARDS))

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
    return f"a{zlib.crc32(trace_id.encode()) % ASSEMBLY_SHARDS}"


def partition_key(topic: str, partition: int) -> str:
    return f"{partition}-{topic}"


def decode_batch(decoder: Decoder, items: list[KafkaItem]) -> list[DeadLetter | Keyed]:
    """Decode a source batch: dead letters, records keyed by trace shard, and progress."""
    out: list[DeadLetter | Keyed] = []
    progress: dict[str, int] = {}
    record_offsets(items)
    for item in items:
        message = to_source_message(item)
        result = message if isinstance(message, DeadLetter) else decoder.decode(message)
        if isinstance(result, DeadLetter):
            instruments.MESSAGES.labels("dead_lettered").inc()
            out.append(result)
            continue
        instruments.MESSAGES.labels("decoded").inc()
        _count(result)
        partition = partition_key(message.topic, message.partition)  # type: ignore[union-attr]
        records: tuple[Record, ...] = (*result.spans, *result.evals)
        for record in records:
            out.append((trace_shard(record.trace_id), record))
            at = event_unix_ns(record)
            if at > progress.get(partition, -1):
                progress[partition] = at
    wall = _wall_ns()
    for partition, at in progress.items():
        for key in ASSEMBLY_KEYS:
            out.append((key, Progress(partition, at, wall, key)))
    return out


def _count(result: Decoded) -> None:
    instruments.SPANS_DROPPED.inc(result.raw_span_count - len(result.spans))
    for span in result.spans:
        instruments.SPANS.labels(span.kind).inc()
        if span.unknown_cost_reason is not None:
            instruments.UNKNOWN_COST.labels(span.unknown_cost_reason).inc()
    instruments.EVALS.inc(len(result.evals))


def _wall_ns() -> int:
    import time  # noqa: PLC0415 - the only clock read of this module, kept visible

    return time.time_ns()


def preaggregate_batch(rules: Callable[[], RulesConfig],
                       batch: Sequence[Record | Progress]) -> list[Keyed]:
    """One partial bucket per (rule family, series, minute) of the batch, keyed by the shard
    that owns the series; then the batch's forwarded progress, to every window shard."""
    records = [r for r in batch if not isinstance(r, Progress)]
    out: list[Keyed] = []
    every = families(rules())
    for index, partial in preaggregate_each(records, [family.key_of for family in every]):
        out.append((f"w{every[index].shard_of(partial.key, WINDOW_SHARDS)}", partial))
    newest: dict[str, Progress] = {}
    for item in batch:
        if isinstance(item, Progress) and (item.partition not in newest or item.max_event_unix_ns
                                           > newest[item.partition].max_event_unix_ns):
            newest[item.partition] = item
    for p in newest.values():
        for key in WINDOW_KEYS:
            out.append((key, Progress(p.partition, p.max_event_unix_ns, p.wall_unix_ns, key)))
    return out


def build_flow(settings: Settings, rules: RulesConfig, sinks: FlowSinks,
               options: FlowOptions) -> Dataflow:
    """Wire the flow; the source defaults to Kafka per `settings.kafka`."""
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

    assembled = op.key_rm("assembled", op.stateful_batch("assemble", keyed, build_assembly))
    if sinks.records is not None:
        records = op.filter("records_only", assembled, lambda r: not isinstance(r, Progress))
        op.output("records_out", cast(Stream[Record], records), sinks.records)
    current_rules = options.live_rules or (lambda: rules)
    window_in = op.flat_map_batch("preaggregate", assembled,
                                  lambda batch: preaggregate_batch(current_rules, batch))
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
            ShardWindows(), new_watermark(window_policy, wait + settings.allowed_lateness),
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

