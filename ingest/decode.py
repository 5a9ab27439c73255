"""Decode stage: one Kafka message -> `Decoded` (spans and evaluations) or a `DeadLetter`.

Bad input is data: any message that cannot be read becomes a dead letter carrying the reason and
where it came from (topic, partition, offset), and decoding goes on with the next message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ingest.config import IngestConfig
from ingest.fastpath import ProtoFastPath
from ingest.normalise import Normaliser
from ingest.pricing import PriceTable
from ingest.raw import Encoding, MalformedMessage, Signal, decode_raw, detect_encoding
from ingest.span import EvalResult, LLMSpan

_log = logging.getLogger(__name__)


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


FastDecoded = tuple[list[LLMSpan], list[EvalResult], int]
"""A message's spans, evaluations and raw span count, from the fast path."""


class Decoder:
    """Decodes messages of the spans topic (and optionally the logs topic)."""

    def __init__(self, config: IngestConfig, encoding: Encoding = "auto",
                 logs_topics: Iterable[str] = (), *, fast: bool = True) -> None:
        """`fast=False` decodes everything the generic way (the reference the fast path is
        tested against)."""
        self._normaliser = Normaliser(config, PriceTable.load(config.pricing_file))
        self._encoding: Encoding = encoding
        self._logs_topics = frozenset(logs_topics)
        self._fast = ProtoFastPath(config, self._normaliser) if fast and encoding in (
            "auto", "otlp_proto") else None
        self._fast_failed = False

    def decode_many(self, messages: Sequence[SourceMessage]) -> list[Decoded | DeadLetter]:
        """`decode` of each message, in order."""
        decode = self.decode
        return [decode(message) for message in messages]

    def decode(self, message: SourceMessage) -> Decoded | DeadLetter:
        """Decode one message; never raises for bad input."""
        fast = self.decode_fast(message.topic, message.value)
        if fast is not None:
            spans, evals, count = fast
            return Decoded(spans=tuple(spans), evals=tuple(evals), raw_span_count=count)
        return self.decode_generic(message)

    def decode_fast(self, topic: str, value: bytes | None) -> FastDecoded | None:
        """What `decode` gives for a message the fast path takes, as (spans, evaluations, raw
        span count), without building a `SourceMessage` or `Decoded` (the flow's decode step
        calls this per message); None when the message is to go through `decode_generic`."""
        if self._fast is None or not value or topic in self._logs_topics or (
                self._encoding != "otlp_proto" and value[:1] != b"\n"):
            return None
        # Trace requests in protobuf take the fast path; whatever it declines (or a bug in it)
        # is decoded the generic way, which names the problem.
        try:
            return self._fast.decode(value)
        except Exception as exc:  # noqa: BLE001
            if not self._fast_failed:  # once: a bug to report, not a flood (no values)
                self._fast_failed = True
                _log.warning("decode fast path failed (%s); using the generic path",
                             type(exc).__name__)
            return None

    def decode_generic(self, message: SourceMessage) -> Decoded | DeadLetter:
        """`decode` without the fast path."""
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
