"""Decode-only micro-benchmark: `Decoder.decode` over OTLP protobuf messages in memory.

    python bench/decode_micro.py [--spans 20000] [--per-message 10] [--runs 5] [--profile]

Traffic is `bench.traffic.generate` (the bench's realistic mix: OTel GenAI services with the app
context on the root span, and OpenInference services), cut into messages of `--per-message`
spans as the issue measured. Prints, per variant, the median spans/s of `--runs` runs with
min-max, in CPU time of this process, the variants' runs interleaved so that load from other
processes hits them alike (compare the ratios, not the absolute figures, on a shared machine):

  parse-only      `ExportTraceServiceRequest.FromString` + touching every span (the floor)
  targeted        the issue's "straightforward targeted extraction" (fields into a dict only)
  generic         the dialect-agnostic path (raw attribute dicts -> `Normaliser`)
  decode          `Decoder.decode`, what the flow calls (fast path for `otlp_proto`), its caches
                  warm from earlier runs as in a running flow
  decode_cold     the same with a new `Decoder` each run: every attribute, resource and model
                  name is new to its caches once (the traffic's first pass)
  decode_many     `Decoder.decode_many` over the same messages, 100 at a time
  decode_batch    the flow's decode step `flows.pipeline.decode_batch` (decode, counters, shard
                  placement, progress), 100 Kafka messages per batch
  assemble        trace assembly alone (not decode): `TraceAssembler.add_many` and `advance`
                  per shard over `decode_batch`'s output (decoded once, before the runs), as
                  the flow's assembly step runs them, then `release_all`

`--semconv latest` rewrites the GenAI services' `gen_ai.system` to `gen_ai.provider.name`
(current semantic conventions); `--profile` prints a cProfile of `decode` by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bytewax.connectors.kafka import KafkaSourceMessage
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from bench.traffic import MINUTE_NS, generate
from flows.kafka_io import KafkaItem
from flows.pipeline import ASSEMBLY_KEYS, ASSEMBLY_SHARDS, decode_batch
from ingest.assembly import Record, TraceAssembler
from ingest.config import IngestConfig
from ingest.decode import DeadLetter, Decoder, SourceMessage

_T = TypeVar("_T")


def messages(spans: int, per_message: int, semconv: str) -> tuple[list[SourceMessage], int]:
    start = (time.time_ns() // MINUTE_NS - 180) * MINUTE_NS
    traffic = generate(spans, start, 500.0, services=40, spans_per_message=per_message)
    values = [m.value for m in traffic.messages]
    if semconv == "latest":
        values = [_latest(v) for v in values]
    return ([SourceMessage("bench", 0, i, None, v) for i, v in enumerate(values)],
            traffic.spans)


def _latest(value: bytes) -> bytes:
    request = ExportTraceServiceRequest.FromString(value)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                for kv in span.attributes:
                    if kv.key == "gen_ai.system":
                        kv.key = "gen_ai.provider.name"
    return bytes(request.SerializeToString())


def parse_only(msgs: list[SourceMessage]) -> None:
    for m in msgs:
        request = ExportTraceServiceRequest.FromString(m.value)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    span.span_id.hex()


_TARGETED = frozenset({
    "gen_ai.operation.name", "gen_ai.system", "gen_ai.provider.name", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.response.finish_reasons", "gen_ai.request.stream", "error.type", "http.route",
    "session.id", "user.id", "app.prompt_template_version", "app.user_segment",
    "app.user_feedback", "openinference.span.kind", "llm.model_name", "llm.provider",
    "llm.token_count.prompt", "llm.token_count.completion", "llm.finish_reason",
    "llm.prompt_template.version", "service.name", "service.version",
    "deployment.environment"})


def targeted(msgs: list[SourceMessage]) -> list[dict[str, object]]:
    """The issue's "straightforward targeted extraction": one pass over each span's attributes
    keeping the GenAI fields in a dict, hex ids; no dialects, context, pricing or errors."""
    out = []
    for m in msgs:
        request = ExportTraceServiceRequest.FromString(m.value)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    fields: dict[str, object] = {
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                        "status": span.status.code}
                    for kv in span.attributes:
                        if kv.key in _TARGETED:
                            value = kv.value
                            which = value.WhichOneof("value")
                            fields[kv.key] = (list(value.array_value.values)
                                              if which == "array_value" else getattr(value, which))
                    out.append(fields)
    return out


def each(decode: Callable[[SourceMessage], object], msgs: list[SourceMessage]) -> None:
    # Results are dropped as the flow drops them after each batch (holding every record of the
    # run would time the garbage collector walking them instead).
    for m in msgs:
        decode(m)


def batched(step: Callable[[list[_T]], object], items: list[_T]) -> None:
    # As the flow runs a step: 100 items a batch, each batch's output dropped after it.
    for i in range(0, len(items), 100):
        step(items[i:i + 100])


Shards = list[tuple[str, list[Record], list[int]]]


def shard_batches(decoder: Decoder, items: list[KafkaItem]) -> Shards:
    """`decode_batch`'s output, 100 messages a batch: (shard, records, progress times)."""
    out: Shards = []
    for i in range(0, len(items), 100):
        for value in decode_batch(decoder, items[i:i + 100]):
            if not isinstance(value, DeadLetter):
                key, batch = value
                out.append((key, list(batch.items),
                            [p.max_event_unix_ns for p in batch.progress]))
    return out


def assemble(shards: Shards) -> None:
    # New assemblers each run (on the flow's clock: the watermark), as the flow sizes them.
    config = IngestConfig()
    assemblers = {key: TraceAssembler(
        wait_ns=int(config.assembly_wait_s * 1e9),
        max_open_traces=max(1, config.assembly_max_traces // ASSEMBLY_SHARDS),
        max_finished_traces=max(1, config.eval_context_traces // ASSEMBLY_SHARDS),
        own_clock=False) for key in ASSEMBLY_KEYS}
    for key, records, progress in shards:
        assembler = assemblers[key]
        assembler.add_many(records)
        for at in progress:
            assembler.advance(at)
    for assembler in assemblers.values():
        assembler.release_all()


def timed(fn: Callable[[], object], spans: int, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        gc.collect()
        # CPU time of this process: "per core", and steadier than wall time on a shared machine
        started = time.process_time()
        fn()
        out.append(spans / (time.process_time() - started))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=20000)
    parser.add_argument("--per-message", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--semconv", choices=["bench", "latest"], default="bench")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    msgs, spans = messages(args.spans, args.per_message, args.semconv)
    decoder = Decoder(IngestConfig())
    generic = Decoder(IngestConfig(), fast=False)
    fresh = [Decoder(IngestConfig()) for _ in range(args.runs + 1)]  # one per decode_cold run
    items: list[KafkaItem] = [KafkaSourceMessage(key=None, value=m.value, topic=m.topic,
                                                 partition=0, offset=m.offset) for m in msgs]
    shards = shard_batches(Decoder(IngestConfig()), items)
    variants: dict[str, Callable[[], object]] = {
        "parse-only": lambda: parse_only(msgs),
        "targeted": lambda: targeted(msgs),
        "generic": lambda: each(generic.decode, msgs),
        "decode": lambda: each(decoder.decode, msgs),
        "decode_cold": lambda: each(fresh.pop().decode, msgs),
        "decode_many": lambda: [decoder.decode_many(msgs[i:i + 100])
                                for i in range(0, len(msgs), 100)][-1],
        "decode_batch": lambda: batched(lambda b: decode_batch(decoder, b), items),
        "assemble": lambda: assemble(shards),
    }
    fast = decoder._fast
    assert fast is not None and fast.decode(msgs[0].value or b"") is not None
    print(f"{spans} spans in {len(msgs)} messages ({args.per_message} per message), "
          f"semconv={args.semconv}, {args.runs} runs, CPU time of this process")
    for fn in variants.values():
        fn()  # warm caches (pricing, content keys), as a running flow has
    values: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.runs):  # interleaved, so load from other processes hits all alike
        for name, fn in variants.items():
            values[name] += timed(fn, spans, 1)
    results = {name: statistics.median(v) for name, v in values.items()}
    for name, v in values.items():
        print(f"{name:12s} {results[name]:>10,.0f} spans/s  (min {min(v):,.0f} max {max(v):,.0f})")
    print(f"decode/generic = {results['decode'] / results['generic']:.2f}x; "
          f"decode/targeted = {results['decode'] / results['targeted']:.2f}; "
          f"decode/parse-only = {results['decode'] / results['parse-only']:.2f}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for m in msgs:
            decoder.decode(m)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
