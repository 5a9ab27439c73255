"""Kafka edges of the flow: the spans source and the dead-letter sink."""

from __future__ import annotations

from bytewax.connectors.kafka import (
    KafkaError,
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from ingest.decode import DeadLetter, SourceMessage
from spanwatch.settings import KafkaSettings

KafkaItem = KafkaSourceMessage[bytes | None, bytes | None] | KafkaError[bytes | None, bytes | None]


def source_topics(kafka: KafkaSettings) -> list[str]:
    return [kafka.spans_topic] + ([kafka.logs_topic] if kafka.logs_topic else [])


def build_source(kafka: KafkaSettings, *, tail: bool = True) -> KafkaSource:
    """Bytewax's KafkaSource: one input partition per Kafka partition, offsets in recovery state.

    It assigns partitions itself (no consumer group), which also suits the embedded broker.
    `raise_on_errors=False` so a consumer error becomes an item we count, not a crash.
    """
    return KafkaSource(
        brokers=kafka.bootstrap_servers.split(","),
        topics=source_topics(kafka),
        tail=tail,
        starting_offset=OFFSET_BEGINNING if kafka.start_from == "beginning" else OFFSET_END,
        add_config=kafka.consumer_config(),
        batch_size=kafka.batch_size,
        raise_on_errors=False,
    )


def build_dead_letter_sink(kafka: KafkaSettings) -> KafkaSink:
    producer_config = {k: v for k, v in kafka.client_config().items() if k != "bootstrap.servers"}
    return KafkaSink(brokers=kafka.bootstrap_servers.split(","), topic=kafka.dead_letter_topic,
                     add_config=producer_config)


def to_source_message(item: KafkaItem) -> SourceMessage | DeadLetter:
    """A Kafka item as the decode stage sees it; a consumer error becomes a dead letter."""
    if isinstance(item, KafkaError):
        msg = item.msg
        return DeadLetter(
            reason=f"kafka consumer error: {item.err}",
            source=SourceMessage(topic=msg.topic or "", partition=msg.partition or 0,
                                 offset=msg.offset or 0, key=msg.key, value=msg.value))
    return SourceMessage(topic=item.topic or "", partition=item.partition or 0,
                         offset=item.offset or 0, key=item.key, value=item.value)


def to_dead_letter_message(letter: DeadLetter) -> KafkaSinkMessage[bytes | None, bytes | None]:
    """The original key and value, unchanged, with the reason and origin in headers."""
    return KafkaSinkMessage(key=letter.source.key, value=letter.source.value,
                            headers=letter.headers())
