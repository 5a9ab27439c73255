"""`spanwatch run`: the flow over Kafka until stopped; alerts go out through the outbox."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from bytewax._bytewax import cli_main

from flows.pipeline import FlowOptions, FlowSinks, build_flow
from flows.sinks import CallbackSink
from ingest.assembly import Record
from ingest.export import record_to_json
from notify.runtime import NotifyRuntime
from rules.records import AlertEvent
from rules.silences import load_silences, lookup
from spanwatch.delivery import GroupNotifier, UsageRecorder
from spanwatch.flow_runtime import kafka_partitions
from spanwatch.live_rules import LiveRules
from spanwatch.observability import start_observability
from spanwatch.settings import Settings

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


def log_events(events: list[AlertEvent]) -> None:
    for event in events:
        log.info("alert rule=%s tier=%d state=%s labels=%s value=%s fingerprint=%s "
                 "suppressed_by=%s", event.rule, event.tier, event.state,
                 dict(event.labels), event.evaluation.value, event.fingerprint,
                 ",".join(event.suppressed_by) or "-")


def run_forever(settings: Settings, workers: int = 1) -> int:
    live_rules = LiveRules(settings.rules_file)
    rules = live_rules()
    silences = load_silences(settings.silences_file) if settings.silences_file.exists() else ()
    runtime = NotifyRuntime.build(rules.receivers, settings.notify)
    writer = JsonLinesWriter(settings.output_file) if settings.output_file else None
    usage = UsageRecorder(runtime.digest_store)

    def write_records(records: list[Record]) -> None:
        usage.write(records)
        if writer is not None:
            writer.write(records)

    sinks = FlowSinks(groups=CallbackSink(GroupNotifier(runtime, rules).write),
                      events=CallbackSink(log_events), records=CallbackSink(write_records))
    partitions = kafka_partitions(settings)
    flow = build_flow(settings, rules, sinks,
                      FlowOptions(partitions=partitions, is_silenced=lookup(silences),
                                  live_rules=live_rules))
    log.info("consuming topic=%s partitions=%d bootstrap=%s workers=%d rules=%d",
             settings.kafka.spans_topic, len(partitions), settings.kafka.bootstrap_servers,
             workers, len(rules.rules))
    runtime.start()
    observability = start_observability(
        host=settings.http_host, port=settings.http_port,
        kafka_client_config=settings.kafka.client_config(), outbox=runtime.outbox,
        receivers=list(rules.receivers),
        details=lambda: {"rules": len(live_rules().rules), "topic": settings.kafka.spans_topic})
    stopped = "stopped"
    try:
        cli_main(flow, workers_per_process=workers)  # type: ignore[no-untyped-call]
    except BaseException as exc:
        stopped = f"flow failed: {type(exc).__name__}"
        raise
    finally:
        observability.stop(stopped)
        runtime.stop()
        if writer is not None:
            writer.close()
    return 0
