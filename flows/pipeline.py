"""The spanwatch dataflow: Kafka -> decode (bad messages -> DLQ) -> trace assembly -> sink.

Only wiring lives here; every step calls a stage package. Step ids are stable: recovery state
is stored under them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
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
from ingest.assembly import Record, TraceAssembler
from ingest.decode import DeadLetter, Decoded, Decoder
from spanwatch.settings import Settings

ASSEMBLY_SHARDS = 64
"""Trace assembly state is split into this many keyed shards (spread over workers)."""


def trace_shard(record: Record) -> str:
    """Shard key of a record: all records of one trace land in the same shard."""
    return str(zlib.crc32(record.trace_id.encode()) % ASSEMBLY_SHARDS)


def decode_batch(decoder: Decoder, items: list[KafkaItem]) -> list[Decoded | DeadLetter]:
    out: list[Decoded | DeadLetter] = []
    for item in items:
        message = to_source_message(item)
        result = message if isinstance(message, DeadLetter) else decoder.decode(message)
        if isinstance(result, DeadLetter):
            instruments.MESSAGES.labels("dead_lettered").inc()
        else:
            instruments.MESSAGES.labels("decoded").inc()
            instruments.SPANS_DROPPED.inc(result.raw_span_count - len(result.spans))
            for span in result.spans:
                instruments.SPANS.labels(span.kind).inc()
                if span.unknown_cost_reason is not None:
                    instruments.UNKNOWN_COST.labels(span.unknown_cost_reason).inc()
            instruments.EVALS.inc(len(result.evals))
        out.append(result)
    return out


def records_of(decoded: Decoded) -> Iterable[Record]:
    yield from decoded.spans
    yield from decoded.evals


class AssemblyLogic(StatefulBatchLogic[Record, Record, TraceAssembler]):
    """Bytewax adapter of `TraceAssembler` for one shard.

    Stream time comes from the records; the wall clock only serves as an idle timer: when a
    shard receives nothing for `wait` it releases what it holds (the stream has gone quiet).
    """

    def __init__(self, assembler: TraceAssembler, wait: timedelta) -> None:
        self._assembler = assembler
        self._wait = wait
        self._reported_open = 0

    def _report_open(self) -> None:
        # One process-wide gauge; each shard adds its own change.
        instruments.OPEN_TRACES.inc(self._assembler.open_traces - self._reported_open)
        self._reported_open = self._assembler.open_traces

    def on_batch(self, values: list[Record]) -> tuple[Iterable[Record], bool]:
        out: list[Record] = []
        before = self._assembler.released_early
        for record in values:
            out.extend(self._assembler.add(record))
        instruments.TRACES_RELEASED_EARLY.inc(self._assembler.released_early - before)
        self._report_open()
        return out, False

    def on_notify(self) -> tuple[Iterable[Record], bool]:
        out = self._assembler.release_all()
        self._report_open()
        return out, False

    def on_eof(self) -> tuple[Iterable[Record], bool]:
        out = self._assembler.release_all()
        self._report_open()
        return out, False

    def notify_at(self) -> datetime | None:
        if self._assembler.open_traces == 0:
            return None
        return datetime.now(UTC) + self._wait

    def snapshot(self) -> TraceAssembler:
        return self._assembler


def build_flow(settings: Settings, records: Sink[Record], *,
               source: Source[Any] | None = None,
               dead_letters: Sink[Any] | None = None, tail: bool = True) -> Dataflow:
    """Wire the flow. `source`/`dead_letters` default to Kafka per `settings.kafka`."""
    kafka = settings.kafka
    ingest = settings.ingest
    decoder = Decoder(ingest, encoding=kafka.encoding,
                      logs_topics=[kafka.logs_topic] if kafka.logs_topic else [])
    flow = Dataflow("spanwatch")
    items: Stream[KafkaItem] = op.input("spans_in", flow,
                                        source or build_source(kafka, tail=tail))
    results = op.flat_map_batch("decode", items, lambda batch: decode_batch(decoder, batch))
    branch = op.branch("split_dead", results, lambda r: isinstance(r, DeadLetter))
    letters: Stream[DeadLetter] = branch.trues  # type: ignore[assignment]
    op.output("dead_letters_out", op.map("dead_letter_msg", letters, to_dead_letter_message),
              dead_letters or build_dead_letter_sink(kafka))
    decoded: Stream[Decoded] = branch.falses  # type: ignore[assignment]
    flat = op.flat_map("records", decoded, records_of)
    keyed = op.key_on("by_trace", flat, trace_shard)
    wait = timedelta(seconds=ingest.assembly_wait_s)
    shards = ASSEMBLY_SHARDS

    def build_assembly(resume: TraceAssembler | None) -> AssemblyLogic:
        assembler = resume or TraceAssembler(
            wait_ns=int(ingest.assembly_wait_s * 1e9),
            max_open_traces=max(1, ingest.assembly_max_traces // shards),
            max_finished_traces=max(1, ingest.eval_context_traces // shards))
        return AssemblyLogic(assembler, wait)

    assembled = op.stateful_batch("assemble", keyed, build_assembly)
    op.output("records_out", op.key_rm("unkey", assembled), records)
    return flow

