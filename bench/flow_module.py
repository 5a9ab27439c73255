"""The flow `bench/run.py` starts with `python -m bytewax.run bench.flow_module:flow [-i I -a ...]`.

Configured by environment variables (set by run.py, one set per process):

- `SPANWATCH_BENCH_BOOTSTRAP`, `SPANWATCH_BENCH_TOPIC`, `SPANWATCH_BENCH_EMBEDDED` ("1"/"0")
- `SPANWATCH_BENCH_MODE`: `consume` (Kafka source only), `decode` (source + the flow's decode
  step), `e2e` (the real flow of `flows.pipeline.build_flow`, every rule of alerts.toml)
- `SPANWATCH_BENCH_TAIL`: "0" (default; stop at the end of the topic) or "1" (live)
- `SPANWATCH_BENCH_RESULTS`: JSON file this process writes at exit: when it started, when its
  source delivered its first and last message, how many, when the run ended, and the process'
  CPU seconds (all threads) at those three moments; for `e2e` also every alert group handed to
  the notifier sink and every firing alert event, with wall time.
- `SPANWATCH_BENCH_RESULTS_LIVE`: optional JSON-lines file appended to (and flushed) at each
  notifier call, for the live latency run that is stopped from outside.
- `SPANWATCH_BENCH_STEP_CPU`: "1" to also record, in the results, the CPU seconds (of the
  calling thread) and calls of each step's Python (decode, assembly, pre-aggregation, windows,
  routing, and the wire encoding of batches sent to another process), and the items and
  partials each pre-aggregation call handled: where a run's CPU goes, 1 process against 2.

The source is Bytewax's KafkaSource exactly as `flows.kafka_io.build_source` builds it, wrapped
only to take timestamps (`TimedSource`).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import resource
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

T_IMPORT = time.time()

import bytewax.operators as op  # noqa: E402
from bytewax.dataflow import Dataflow  # noqa: E402
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition  # noqa: E402

from flows.kafka_io import build_source  # noqa: E402
from flows.pipeline import FlowOptions, FlowSinks, build_flow, decode_batch, partition_key  # noqa: E402
from flows.sinks import CallbackSink  # noqa: E402
from ingest.decode import Decoder  # noqa: E402
from rules.grouping import AlertGroup  # noqa: E402
from rules.load import load_rules  # noqa: E402
from rules.records import AlertEvent  # noqa: E402
from spanwatch.settings import KafkaSettings, Settings  # noqa: E402

_lock = threading.Lock()
_stats: dict[str, Any] = {"t_import": T_IMPORT, "t_first": None, "t_last": None,
                          "messages": 0, "notifications": [], "firing": []}


def _cpu_s() -> float:
    """CPU seconds of the whole process (every thread; Bytewax's worker is one of them)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _TimedPartition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any]) -> None:
        self._inner = inner

    def next_batch(self) -> list[Any]:
        batch = list(self._inner.next_batch())  # StopIteration at the end passes through
        if batch:
            now, cpu = time.time(), _cpu_s()
            with _lock:
                if _stats["t_first"] is None:
                    _stats["t_first"], _stats["cpu_first_s"] = now, cpu
                _stats["t_last"], _stats["cpu_last_s"] = now, cpu
                _stats["messages"] += len(batch)
        return batch

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class TimedSource(FixedPartitionedSource[Any, Any]):
    """A FixedPartitionedSource that timestamps the first and last batch it delivers."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any]) -> None:
        self._inner = inner

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _TimedPartition:
        return _TimedPartition(self._inner.build_part(step_id, for_part, resume_state))


def _write_results() -> None:
    path = os.environ.get("SPANWATCH_BENCH_RESULTS")
    if not path:
        return
    with _lock:
        _stats["t_end"] = time.time()
        _stats["cpu_s"] = _cpu_s()
        with Path(path).open("w", encoding="utf-8") as file:
            json.dump(_stats, file)


def _live(line: dict[str, Any]) -> None:
    path = os.environ.get("SPANWATCH_BENCH_RESULTS_LIVE")
    if path:
        with Path(path).open("a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")
            file.flush()


def _on_groups(groups: list[AlertGroup]) -> None:
    """The notifier sink: in production `GroupNotifier.write`; here it timestamps the call."""
    now = time.time()
    for group in groups:
        entry = {"t": now, "rule": group.rule, "labels": dict(group.labels),
                 "at_unix_ns": group.at_unix_ns, "firing": len(group.firing),
                 "storm": group.is_storm_summary}
        with _lock:
            _stats["notifications"].append(entry)
        _live({"kind": "notify", **entry})


def _on_events(events: list[AlertEvent]) -> None:
    now = time.time()
    for event in events:
        if event.state == "firing" and not event.evaluation.is_gated:
            entry = {"t": now, "rule": event.rule, "labels": dict(event.labels),
                     "at_unix_ns": event.at_unix_ns, "suppressed": bool(event.suppressed_by)}
            with _lock:
                _stats["firing"].append(entry)
            _live({"kind": "firing", **entry})


def _discard(_: list[Any]) -> None:
    return None


def settings_from_env() -> Settings:
    embedded = os.environ.get("SPANWATCH_BENCH_EMBEDDED", "1") == "1"
    return Settings(_env_file=None, kafka=KafkaSettings(  # type: ignore[call-arg]
        bootstrap_servers=os.environ["SPANWATCH_BENCH_BOOTSTRAP"],
        spans_topic=os.environ["SPANWATCH_BENCH_TOPIC"], start_from="beginning",
        dead_letter_topic=os.environ.get("SPANWATCH_BENCH_DLQ", "spanwatch_bench_dlq"),
        batch_size=int(os.environ.get("SPANWATCH_BENCH_BATCH", "1000")),
        fetch_wait_max_ms=10 if embedded else None))


def make_flow() -> Dataflow:
    mode = os.environ.get("SPANWATCH_BENCH_MODE", "e2e")
    tail = os.environ.get("SPANWATCH_BENCH_TAIL", "0") == "1"
    settings = settings_from_env()
    source = TimedSource(build_source(settings.kafka, tail=tail))
    if mode == "e2e":
        rules = load_rules(os.environ.get("SPANWATCH_BENCH_RULES", "alerts.toml"))
        topic = settings.kafka.spans_topic
        parts = int(os.environ["SPANWATCH_BENCH_PARTITIONS"])
        sinks = FlowSinks(groups=CallbackSink(_on_groups), events=CallbackSink(_on_events),
                          dead_letters=CallbackSink(_discard))
        options = FlowOptions(partitions=tuple(partition_key(topic, p) for p in range(parts)),
                              tail=tail, source=source)
        return build_flow(settings, rules, sinks, options)
    flow = Dataflow("spanwatch_bench_" + mode)
    items = op.input("spans_in", flow, source)
    if mode == "decode":
        decoder = Decoder(settings.ingest)
        out = op.flat_map_batch("decode", items,
                                lambda batch: [len(decode_batch(decoder, batch))])
    elif mode == "consume":
        out = op.flat_map_batch("count", items, lambda batch: [len(batch)])
    else:
        raise ValueError(f"SPANWATCH_BENCH_MODE={mode!r}: expected consume, decode or e2e")
    op.output("out", out, CallbackSink(_discard))
    return flow


def _timed(name: str, function: Callable[..., Any],
           count: Callable[[Any, Any], dict[str, int]] | None = None) -> Callable[..., Any]:
    """`function`, adding its thread CPU seconds and calls to `_stats["steps"][name]` (and
    whatever `count(args, result)` counts)."""
    entry = _stats.setdefault("steps", {}).setdefault(name, {"cpu_s": 0.0, "calls": 0})

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        result = function(*args, **kwargs)
        entry["cpu_s"] += time.thread_time() - started
        entry["calls"] += 1
        if count is not None:
            for key, value in count(args, result).items():
                entry[key] = entry.get(key, 0) + value
        return result

    return timed


def _preaggregate_counts(args: Any, result: Any) -> dict[str, int]:
    batches = args[1]
    return {"batches_in": len(batches), "records": sum(len(b.items) for b in batches),
            "partials": sum(len(batch.items) for _, batch in result),
            "batches_out": len(result)}


def _time_gc() -> None:
    """Cyclic garbage collections: thread CPU seconds and count per generation, as a step."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.thread_time())
            return
        entry = _stats.setdefault("steps", {}).setdefault(
            f"gc.gen{info['generation']}", {"cpu_s": 0.0, "calls": 0})
        entry["cpu_s"] += time.thread_time() - started.pop() if started else 0.0
        entry["calls"] += 1

    gc.callbacks.append(callback)


def instrument_steps() -> None:
    """Wrap the flow's step functions with `_timed` (before `build_flow` wires them: the
    wiring looks them up at call time or takes the classes' methods)."""
    from flows import pipeline, steps, wire  # noqa: PLC0415

    pipeline.decode_batch = _timed("decode", pipeline.decode_batch)
    pipeline.preaggregate_batches = _timed(
        "preaggregate", pipeline.preaggregate_batches, _preaggregate_counts)
    wire.encode = _timed("wire.encode", wire.encode)
    wire.decode = _timed("wire.decode", wire.decode)
    _time_gc()
    for cls, name in ((steps.AssemblyLogic, "assembly"), (steps.WindowLogic, "windows"),
                      (steps.AlertRoutingLogic, "routing")):
        for method in ("on_batch", "on_notify", "on_eof"):
            setattr(cls, method, _timed(f"{name}.{method}", getattr(cls, method)))


atexit.register(_write_results)
if os.environ.get("SPANWATCH_BENCH_STEP_CPU") == "1":
    instrument_steps()
flow = make_flow()
