"""Decode stage: one Kafka message -> `Decoded` (spans and evaluations) or a `DeadLetter`.

Bad input is data: any message that cannot be read becomes a dead letter carrying the reason and
where it came from (topic, partition, offset), and decoding goes on with the next message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ingest.config import IngestConfig
from ingest.normalise import Normaliser
from ingest.pricing import PriceTable
from ingest.raw import Encoding, MalformedMessage, Signal, decode_raw, detect_encoding
from ingest.span import EvalResult, LLMSpan


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """A message as read from Kafka (or a recorded file, where topic is the file name)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Decoded:
    spans: tuple[LLMSpan, ...]
    evals: tuple[EvalResult, ...]
    raw_span_count: int
    """Spans in the message, kept or not (tool and framework spans are dropped)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be decoded, with the reason, bound for the dead-letter topic."""

    reason: str
    source: SourceMessage

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers that tell an operator what failed and where the message came from."""
        return [
            ("spanwatch.error", self.reason.encode()),
            ("spanwatch.source.topic", self.source.topic.encode()),
            ("spanwatch.source.partition", str(self.source.partition).encode()),
            ("spanwatch.source.offset", str(self.source.offset).encode()),
        ]


class Decoder:
    """Decodes messages of the spans topic (and optionally the logs topic)."""

    def __init__(self, config: IngestConfig, encoding: Encoding = "auto",
                 logs_topics: Iterable[str] = ()) -> None:
        self._normaliser = Normaliser(config, PriceTable.load(config.pricing_file))
        self._encoding: Encoding = encoding
        self._logs_topics = frozenset(logs_topics)

    def decode(self, message: SourceMessage) -> Decoded | DeadLetter:
        """Decode one message; never raises for bad input."""
        signal: Signal = "logs" if message.topic in self._logs_topics else "traces"
        try:
            batch = decode_raw(message.value, self._encoding, signal)
        except MalformedMessage as exc:
            return DeadLetter(reason=f"malformed {self._encoding_name(message)}: {exc}",
                              source=message)
        except Exception as exc:  # noqa: BLE001 - whatever the bytes, the flow keeps going
            return DeadLetter(reason=f"undecodable {self._encoding_name(message)}: "
                                     f"{type(exc).__name__}: {exc}", source=message)
        spans: list[LLMSpan] = []
        evals: list[EvalResult] = []
        for raw_span in batch.spans:
            try:
                result = self._normaliser.normalise_span(raw_span)
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the flow; DLQ it
                return DeadLetter(reason=f"cannot normalise span {raw_span.span_id}: "
                                         f"{type(exc).__name__}: {exc}", source=message)
            if result.span is not None:
                spans.append(result.span)
            evals.extend(result.evals)
        for raw_log in batch.logs:
            try:
                result = self._normaliser.normalise_log(raw_log)
            except Exception as exc:  # noqa: BLE001
                return DeadLetter(reason=f"cannot normalise log record: {type(exc).__name__}: "
                                         f"{exc}", source=message)
            evals.extend(result.evals)
        return Decoded(spans=tuple(spans), evals=tuple(evals), raw_span_count=len(batch.spans))

    def _encoding_name(self, message: SourceMessage) -> str:
        if self._encoding != "auto":
            return self._encoding
        detected = detect_encoding(message.value or b"")
        return "JSON message" if detected == "otlp_json" else "OTLP protobuf message"
