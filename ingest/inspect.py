"""`spanwatch inspect`: recorded files -> the records spanwatch makes of them, as JSON objects.

Runs the live flow's decode and trace-assembly code over the files in order, so what it prints
is what the flow would see. Undecodable messages come out as errors naming file and message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ingest.assembly import Record, TraceAssembler
from ingest.config import IngestConfig
from ingest.decode import DeadLetter, Decoder
from ingest.export import record_to_json
from ingest.raw import detect_encoding
from ingest.recorded import read_messages

_LOGS_TOPIC = "recorded-logs"


@dataclass(frozen=True, slots=True)
class InspectLine:
    record: dict[str, Any] | None = None
    error: str | None = None


def inspect_files(files: Iterable[Path], config: IngestConfig) -> Iterator[InspectLine]:
    """Every record of every file (after trace assembly), then nothing else."""
    decoder = Decoder(config, logs_topics=[_LOGS_TOPIC])
    assembler = TraceAssembler(wait_ns=int(config.assembly_wait_s * 1e9),
                               max_open_traces=config.assembly_max_traces,
                               max_finished_traces=config.eval_context_traces)
    for path in files:
        for message in read_messages(path):
            result = decoder.decode(message)
            if isinstance(result, DeadLetter) and detect_encoding(message.value or b"") == \
                    "otlp_proto":
                # A protobuf recording does not say which signal it holds; try logs next and
                # report the traces error if that fails too.
                as_logs = decoder.decode(replace(message, topic=_LOGS_TOPIC))
                result = result if isinstance(as_logs, DeadLetter) else as_logs
            if isinstance(result, DeadLetter):
                yield InspectLine(error=f"{path}: message {message.offset}: {result.reason}")
                continue
            records: list[Record] = [*result.spans, *result.evals]
            for record in records:
                yield from _lines(assembler.add(record))
    yield from _lines(assembler.release_all())


def _lines(records: list[Record]) -> Iterator[InspectLine]:
    for record in records:
        yield InspectLine(record=record_to_json(record))
