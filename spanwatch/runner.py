"""`spanwatch run`: the flow over Kafka until stopped, records to a JSON-lines file if asked."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from bytewax._bytewax import cli_main

from flows.pipeline import build_flow
from flows.sinks import CallbackSink
from ingest.assembly import Record
from ingest.export import record_to_json
from spanwatch.settings import Settings

log = logging.getLogger("spanwatch.run")


class JsonLinesWriter:
    """Appends records as JSON lines; thread-safe for several workers in one process."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8") if path else None
        self.count = 0

    def write(self, records: list[Record]) -> None:
        with self._lock:
            self.count += len(records)
            if self._file is not None:
                for record in records:
                    self._file.write(json.dumps(record_to_json(record)) + "\n")
                self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def run_forever(settings: Settings, workers: int = 1) -> int:
    writer = JsonLinesWriter(settings.output_file)
    flow = build_flow(settings, CallbackSink(writer.write))
    log.info("consuming topic=%s bootstrap=%s workers=%d", settings.kafka.spans_topic,
             settings.kafka.bootstrap_servers, workers)
    try:
        cli_main(flow, workers_per_process=workers)  # type: ignore[no-untyped-call]
    finally:
        writer.close()
    return 0
