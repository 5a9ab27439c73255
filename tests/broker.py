"""Pytest plugin: the Kafka broker the tests run against.

Enabled by ``pytest_plugins = ["tests.broker"]`` in ``tests/conftest.py``
(or ``-p tests.broker``). The broker comes from one setting:

* ``SPANWATCH_TEST_KAFKA=host:port`` set and non-empty: that (real Apache
  Kafka) broker is used and must be reachable; ``is_embedded`` is False.
* otherwise: an :class:`~spanwatch.embedded_broker.EmbeddedBroker` (tansu,
  memory storage, 127.0.0.1) is started once for the session and stopped at
  its end; ``is_embedded`` is True.

Fixtures:

``kafka`` (session)
    :class:`KafkaUnderTest` describing the broker.
``make_topic`` (function)
    a callable ``make_topic(partitions=1) -> str`` creating a fresh topic.

Tests sharing the session broker must each use their own topics; use
:func:`new_topic` (or ``make_topic``), which names topics uniquely. Topics are
not deleted: the embedded broker forgets them on stop, and a real broker
given to the tests is expected to be disposable.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from spanwatch.embedded_broker import EmbeddedBroker, client_tuning, create_topics

__all__ = ["ENV_VAR", "KafkaUnderTest", "kafka", "make_topic", "new_topic"]

#: The one setting that selects a real broker instead of the embedded one.
ENV_VAR = "SPANWATCH_TEST_KAFKA"

_REACHABLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class KafkaUnderTest:
    """The broker the tests talk to."""

    bootstrap: str
    """``host:port`` for ``bootstrap.servers`` / ``KafkaSource(brokers=[...])``."""
    is_embedded: bool
    """True for the embedded tansu broker, False for real Kafka."""

    def consumer_tuning(self) -> dict[str, str]:
        """Extra librdkafka consumer settings this broker needs (see ``client_tuning``)."""
        return client_tuning(self.is_embedded)


def new_topic(kafka: KafkaUnderTest, partitions: int = 1, prefix: str = "spanwatch-test") -> str:
    """Create a uniquely named topic with *partitions* partitions and return its name.

    Returns once the broker's metadata lists every partition.
    """
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    create_topics(kafka.bootstrap, [name], partitions=partitions)
    return name


def _wait_reachable(bootstrap: str, timeout: float) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            md = admin.list_topics(timeout=min(2.0, remaining))
        except KafkaException as exc:
            last_error = str(exc)
            time.sleep(0.1)  # poll interval, in case the client fails fast
            continue
        if md.brokers:
            return
        last_error = "metadata without brokers"
        time.sleep(0.1)
    msg = f"{ENV_VAR}={bootstrap!r}: broker did not answer within {timeout:.0f}s ({last_error})"
    raise RuntimeError(msg)


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaUnderTest]:
    """The session's broker: ``$SPANWATCH_TEST_KAFKA`` if set, else an embedded tansu."""
    external = os.environ.get(ENV_VAR, "").strip()
    if external:
        _wait_reachable(external, _REACHABLE_TIMEOUT)
        yield KafkaUnderTest(bootstrap=external, is_embedded=False)
        return
    with EmbeddedBroker() as broker:
        yield KafkaUnderTest(bootstrap=broker.bootstrap, is_embedded=True)


@pytest.fixture
def make_topic(kafka: KafkaUnderTest) -> Callable[..., str]:
    """Return ``make_topic(partitions=1) -> str``, creating fresh topics on ``kafka``."""

    def _make(partitions: int = 1) -> str:
        return new_topic(kafka, partitions=partitions)

    return _make
