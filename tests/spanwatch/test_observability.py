"""Self-observability: JSON logs, the /metrics /healthz /readyz server, consumer lag against a real
broker, and `spanwatch run` serving its own metrics while it consumes OTel SDK spans."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from flows import instruments
from notify.outbox import Outbox
from notify.records import Delivered, Failed, Retry
from notify.worker import DeliveryWorker
from spanwatch.observability import (
    Health,
    JsonFormatter,
    ObservabilityServer,
)
from tests.broker import KafkaUnderTest
from tests.fakes.genai_trace import SECRET_PROMPT, chat_trace
from tests.fakes.otel_spans import T0_NS, SpanRecorder, otlp_proto
from tests.notify.conftest import FakeClock
from tests.notify.test_worker import ScriptedNotifier, notes

SOURCE_STEP = "spanwatch.spans_in"
"""Step id of the flow's Kafka source, a label of Bytewax's consumer-lag gauge."""

ROOT = Path(__file__).resolve().parents[2]
ROUTING_KEY = "R0UT1NGKEY0000000000000000000042"


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - local test URL
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample in exposition text, or None when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            got = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if got == wanted:
                return float(match[3])
    return None


def test_json_log_lines_carry_message_level_extra_fields_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("spanwatch.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("delivery retried receiver=%s", "oncall", extra={"attempt": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("notifier raised")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "delivery retried receiver=oncall"
    assert (first["level"], first["logger"], first["attempt"]) == (
        "WARNING", "spanwatch.test.json", 3)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exception"]


def test_server_serves_metrics_and_health_and_reports_a_stopped_flow() -> None:
    instruments.MESSAGES.labels("decoded").inc(0)  # make sure the family has a sample
    health = Health(running=True, details=lambda: {"rules": 31})
    server = ObservabilityServer("127.0.0.1", 0, health)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, content_type, body = _get(f"{base}/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert _sample(body, "spanwatch_messages_total", outcome="decoded") is not None
        status, _, body = _get(f"{base}/healthz")
        assert status == 200
        assert json.loads(body)["status"] == "ok"
        assert json.loads(body)["rules"] == 31
        health.running, health.stopped_reason = False, "flow failed: KafkaException"
        status, _, body = _get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body)["stopped_reason"] == "flow failed: KafkaException"
        assert _get(f"{base}/nothing")[0] == 404
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.kafka
def test_spanwatch_run_exports_its_own_metrics_while_consuming(
        kafka: KafkaUnderTest, make_topic: Callable[..., str], tmp_path: Path) -> None:
    topic = make_topic(2)
    recorder = SpanRecorder()
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(20):
        trace = chat_trace(recorder, T0_NS + i * 1_000_000_000,
                           error="rate limited" if i % 5 == 0 else None)
        producer.produce(topic, value=otlp_proto(trace.spans), partition=i % 2)
    producer.produce(topic, value=b"\x00not a protobuf", partition=0)
    assert producer.flush(10) == 0
    port = _free_port()
    env = {**os.environ,
           "SPANWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
           "SPANWATCH_KAFKA__SPANS_TOPIC": topic, "SPANWATCH_KAFKA__START_FROM": "beginning",
           "SPANWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{topic}-dlq",
           "SPANWATCH_RULES_FILE": str(ROOT / "alerts.toml"),
           "SPANWATCH_NOTIFY__OUTBOX_PATH": str(tmp_path / "outbox.db"),
           "SPANWATCH_NOTIFY__DIGEST_PATH": str(tmp_path / "digest.db"),
           "SPANWATCH_SILENCES_FILE": str(tmp_path / "silences.json"),
           "SPANWATCH_HTTP_HOST": "127.0.0.1", "SPANWATCH_HTTP_PORT": str(port),
           "SPANWATCH_LOG_FORMAT": "json",
           "SPANWATCH_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
           "SPANWATCH_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{_free_port()}/hook"}
    if kafka.is_embedded:
        env["SPANWATCH_KAFKA__FETCH_WAIT_MAX_MS"] = "10"
    proc = subprocess.Popen([sys.executable, "-m", "spanwatch.cli", "run"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _, body = _get(f"http://127.0.0.1:{port}/metrics")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
                continue
            decoded = _sample(body, "spanwatch_messages_total", outcome="decoded")
            dead = _sample(body, "spanwatch_messages_total", outcome="dead_lettered")
            # Bytewax's lag gauge (librdkafka statistics, every second while the source
            # polls): real Kafka must report every partition read to its end. The embedded
            # broker's high watermark is wrong (README, Performance): only its presence there.
            lags = [_sample(body, "bytewax_kafka_consumer_lag", step_id=SOURCE_STEP,
                            topic=topic, partition=str(p)) for p in (0, 1)]
            caught_up = all(lag is not None and (kafka.is_embedded or lag == 0) for lag in lags)
            if decoded == 20 and dead == 1 and caught_up:
                break
            time.sleep(0.5)
        assert _sample(body, "spanwatch_messages_total", outcome="decoded") == 20
        assert _sample(body, "spanwatch_messages_total", outcome="dead_lettered") == 1
        assert _sample(body, "spanwatch_spans_total", kind="llm") == 20
        assert _sample(body, "spanwatch_outbox_pending", receiver="pagerduty") is not None
        for partition in ("0", "1"):
            lag = _sample(body, "bytewax_kafka_consumer_lag", step_id=SOURCE_STEP, topic=topic,
                          partition=partition)
            assert lag is not None
            if not kafka.is_embedded:
                assert lag == 0
        status, _, health = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert json.loads(health)["topic"] == topic
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(line["logger"] == "spanwatch.run" for line in lines), stderr[-2000:]
    assert SECRET_PROMPT not in stderr
    assert ROUTING_KEY not in stderr


def test_delivery_outcomes_are_counted_per_receiver(tmp_path: Path) -> None:
    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("spanwatch_notifications_total",
                                         {"receiver": "obs-test", "outcome": outcome}) or 0.0

    before = {o: count(o) for o in ("sent", "retried", "failed")}
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    clock = FakeClock()
    first, second = notes("obs-test", ("chat", "trigger", 0), ("search", "trigger", 0))
    outbox.enqueue(first, clock.now())
    outbox.enqueue(second, clock.now())
    notifier = ScriptedNotifier("obs-test", Retry(None, "503"), Retry(None, "429"),
                                Delivered("ok"), Failed("400 invalid"))
    DeliveryWorker(notifier, outbox, clock=clock, jitter=lambda: 0.0).drain(timeout_s=600)
    outbox.close()
    after = {o: count(o) for o in ("sent", "retried", "failed")}
    assert {o: after[o] - before[o] for o in after} == {"sent": 1, "retried": 2, "failed": 1}
