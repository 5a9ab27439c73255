"""Recorded spans -> `SourceMessage`s, from the OpenTelemetry Collector file exporter's formats.

- OTLP JSON lines: one ExportTraceServiceRequest (or logs request) JSON document per line.
- OTLP protobuf: each message prefixed by its length as a 4-byte big-endian integer.

The reader yields messages; decoding is the same `Decoder` the live flow uses, so a recording
gives the same records as the topic it was taken from.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from ingest.decode import SourceMessage

_LENGTH = struct.Struct(">I")
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class RecordingError(ValueError):
    """A recorded file that cannot be split into messages; names the file and byte offset."""


def read_messages(path: Path, *, signal_topic: str = "otlp_spans") -> Iterator[SourceMessage]:
    """Messages of one recorded file; `offset` is the line number or the message index.

    `signal_topic` becomes the messages' topic, so the decoder treats them as spans (the
    default) or as logs (pass the logs topic name).
    """
    with path.open("rb") as file:
        head = file.read(1)
        file.seek(0)
        if head in (b"{", b" ", b"\n", b"\r", b"\t"):
            for number, line in enumerate(file, start=1):
                if line.strip():
                    yield SourceMessage(topic=signal_topic, partition=0, offset=number,
                                        key=None, value=line.strip())
            return
        index = 0
        while True:
            position = file.tell()
            prefix = file.read(_LENGTH.size)
            if not prefix:
                return
            if len(prefix) < _LENGTH.size:
                raise RecordingError(f"{path}: byte {position}: truncated length prefix")
            (length,) = _LENGTH.unpack(prefix)
            if length > _MAX_MESSAGE_BYTES:
                raise RecordingError(f"{path}: byte {position}: message length {length} is not "
                                     "plausible; is this an OTLP protobuf file-exporter file?")
            value = file.read(length)
            if len(value) < length:
                raise RecordingError(f"{path}: byte {position}: message cut short "
                                     f"({len(value)} of {length} bytes)")
            yield SourceMessage(topic=signal_topic, partition=0, offset=index, key=None,
                                value=value)
            index += 1


def write_proto_messages(path: Path, values: list[bytes]) -> None:
    """Write messages in the file exporter's protobuf format (used by the demo and tests)."""
    with path.open("wb") as file:
        for value in values:
            file.write(_LENGTH.pack(len(value)))
            file.write(value)
