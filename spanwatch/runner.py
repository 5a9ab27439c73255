"""`spanwatch run`: the flow over Kafka until stopped; alerts go out through the outbox."""

from __future__ import annotations

import argparse
import atexit
import fcntl
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax._bytewax import cli_main
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir

from flows.pipeline import FlowOptions, FlowSinks, build_flow
from flows.sinks import CallbackSink
from ingest.assembly import Record
from ingest.export import record_to_json
from ingest.pricing import PriceTable
from notify.runtime import NotifyRuntime
from rules.config import RulesConfig
from rules.records import AlertEvent
from spanwatch.delivery import GroupNotifier, UsageRecorder
from spanwatch.flow_runtime import SilencesFile, kafka_partitions
from spanwatch.live_rules import LiveRules
from spanwatch.observability import start_observability
from spanwatch.settings import RecoverySettings, Settings

log = logging.getLogger("spanwatch.run")


class JsonLinesWriter:
    """Appends records as JSON lines; thread-safe for several workers in one process."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def write(self, records: list[Record]) -> None:
        with self._lock:
            for record in records:
                self._file.write(json.dumps(record_to_json(record)) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def recovery_config(recovery: RecoverySettings) -> RecoveryConfig | None:
    """Bytewax's recovery configuration, creating the partitions in an empty directory.

    Creation is under an exclusive lock on a file beside the partitions, so processes of a
    cluster sharing the directory do not both create them.
    """
    if recovery.directory is None:
        return None
    directory = recovery.directory
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".spanwatch-init.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = sorted(directory.glob("part-*.sqlite3"))
        if existing:
            log.info("recovery: resuming from %d partition(s) in %s", len(existing), directory)
        else:
            init_db_dir(directory, recovery.partitions)  # type: ignore[no-untyped-call]
            log.info("recovery: created %d partition(s) in %s", recovery.partitions, directory)
    return RecoveryConfig(directory, recovery.backup_interval)  # type: ignore[no-untyped-call]


def epoch_interval(recovery: RecoverySettings) -> timedelta | None:
    """Snapshots are taken at epoch ends, so the epoch is the snapshot interval (Bytewax's
    default of 10 s without recovery)."""
    return recovery.snapshot_interval if recovery.directory is not None else None


def log_events(events: list[AlertEvent]) -> None:
    for event in events:
        log.info("alert rule=%s tier=%d state=%s labels=%s value=%s fingerprint=%s "
                 "suppressed_by=%s", event.rule, event.tier, event.state,
                 dict(event.labels), event.evaluation.value, event.fingerprint,
                 ",".join(event.suppressed_by) or "-")


@dataclass
class RunParts:
    """The flow of `spanwatch run` and what it writes to: notify runtime, records file."""

    flow: Dataflow
    rules: RulesConfig
    live_rules: LiveRules
    runtime: NotifyRuntime
    writer: JsonLinesWriter | None

    def close(self) -> None:
        self.runtime.stop()
        if self.writer is not None:
            self.writer.close()


def build_run(settings: Settings, workers: int = 1, process_id: int | None = None) -> RunParts:
    """Rules, notify runtime (not started) and the Kafka flow, from the settings."""
    live_rules = LiveRules(settings.rules_file)
    rules = live_rules()
    runtime = NotifyRuntime.build(rules.receivers, settings.notify,
                                  prices=PriceTable.load(settings.ingest.pricing_file))
    writer = JsonLinesWriter(settings.output_file) if settings.output_file else None
    usage = UsageRecorder(runtime.digest_store, writer=process_id or 0)

    def write_records(records: list[Record]) -> None:
        usage.write(records)
        if writer is not None:
            writer.write(records)

    sinks = FlowSinks(groups=CallbackSink(GroupNotifier(runtime, rules).write),
                      events=CallbackSink(log_events), records=CallbackSink(write_records))
    partitions = kafka_partitions(settings)
    flow = build_flow(settings, rules, sinks,
                      FlowOptions(partitions=partitions,
                                  is_silenced=SilencesFile(settings.silences_file),
                                  live_rules=live_rules))
    log.info("consuming topic=%s partitions=%d bootstrap=%s workers=%d rules=%d",
             settings.kafka.spans_topic, len(partitions), settings.kafka.bootstrap_servers,
             workers, len(rules.rules))
    return RunParts(flow, rules, live_rules, runtime, writer)


def cluster_flow() -> Dataflow:
    """`spanwatch run` for Bytewax's own launcher, e.g. one process of a cluster:

        python -m bytewax.run "spanwatch.runner:cluster_flow()" -i 0 -a "h0:2101;h1:2101" \
            [-w WORKERS] [-r RECOVERY_DIR -s SNAPSHOT_S -b BACKUP_S]

    Settings come from the environment as for `spanwatch run`; recovery from bytewax.run's
    flags (create the partitions first: `python -m bytewax.recovery DIR N`). Every process
    delivers from the shared outbox file (a row is claimed by one process); all alert groups
    are made on the one worker that owns the routing key. No metrics endpoint is served.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                                                   "%(message)s")
    parts = build_run(Settings(), process_id=_launcher_process_id())
    parts.runtime.start()
    atexit.register(parts.close)
    return parts.flow


def _launcher_process_id() -> int | None:
    """The `-i` / `--process-id` (or BYTEWAX_PROCESS_ID) bytewax.run was started with: the
    digest's usage rows are kept per process, so processes do not overwrite each other's."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-i", "--process-id", type=int,
                        default=os.environ.get("BYTEWAX_PROCESS_ID"))
    known, _ = parser.parse_known_args(sys.argv[1:])
    return None if known.process_id is None else int(known.process_id)


def _interrupted(exc: BaseException) -> bool:
    """Bytewax wraps the KeyboardInterrupt a signal raised in its own error, or reports a
    signal its run loop noticed as "signal received": look through both."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt) or str(seen).endswith("signal received"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def run_forever(settings: Settings, workers: int = 1, *, process_id: int | None = None,
                addresses: list[str] | None = None) -> int:
    """Run until stopped; with `process_id` and `addresses`, as one process of a cluster."""
    # SIGTERM (docker stop, Kubernetes) stops like Ctrl-C: Bytewax checks for signals and
    # unwinds, and the outbox and stores are closed below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parts = build_run(settings, workers, process_id)
    flow, rules, live_rules, runtime = parts.flow, parts.rules, parts.live_rules, parts.runtime
    runtime.start()
    observability = start_observability(
        host=settings.http_host, port=settings.http_port,
        outbox=runtime.outbox,
        receivers=list(rules.receivers),
        details=lambda: {"rules": len(live_rules().rules), "topic": settings.kafka.spans_topic})
    stopped = "stopped"
    try:
        cli_main(flow, workers_per_process=workers,  # type: ignore[no-untyped-call]
                 process_id=process_id, addresses=addresses,
                 epoch_interval=epoch_interval(settings.recovery),
                 recovery_config=recovery_config(settings.recovery))
    except BaseException as exc:
        if _interrupted(exc):  # Ctrl-C or SIGTERM: a normal stop, not a failure
            log.info("stopped by signal")
            return 0
        stopped = f"flow failed: {type(exc).__name__}"
        raise
    finally:
        observability.stop(stopped)
        parts.close()
    return 0
