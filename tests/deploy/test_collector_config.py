"""deploy/otel-collector.yaml, checked without a collector: its structure (what the collector
validates at startup) and that it feeds spanwatch: the kafka exporter writes the topics and
encoding spanwatch reads, to the broker docker-compose.yml runs, and the OTLP receiver listens
on the ports compose publishes."""

from __future__ import annotations

import copy
import re
import typing
from collections.abc import Callable
from typing import Any

import pytest

from spanwatch.settings import KafkaSettings
from tests.deploy.files import (
    COLLECTOR_CONFIG,
    COMPOSE_FILE,
    REPO,
    collector_problems,
    container_to_host,
    environment,
    load_yaml,
    map_path,
    pipelines_using,
    published_ports,
)

# Per-signal `traces::topic`/`::encoding` exist from this contrib version on (the top-level
# `topic`/`encoding` were deprecated then, and later removed).
PER_SIGNAL_TOPICS_SINCE = (0, 124, 0)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load_yaml(COLLECTOR_CONFIG)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def kafka_exporter(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    found = [(cid, body) for cid, body in config["exporters"].items()
             if cid.split("/")[0] == "kafka"]
    assert len(found) == 1, "expected exactly one kafka exporter"
    return found[0]


def test_structure(config: dict[str, Any]) -> None:
    assert collector_problems(config) == []


Breakage = Callable[[dict[str, Any]], None]


def _undefined_exporter(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["traces"]["exporters"] = ["kafka/spans"]


def _undefined_processor(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["logs"]["processors"].append("attributes")


def _unused_receiver(c: dict[str, Any]) -> None:
    c["receivers"]["zipkin"] = {}


def _bad_signal(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["spans"] = c["service"]["pipelines"].pop("traces")


def _no_exporters(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["logs"]["exporters"] = []


def _deprecated_top_level_topic(c: dict[str, Any]) -> None:
    c["exporters"]["kafka"]["topic"] = "otlp_spans"


def _misspelt_signal_key(c: dict[str, Any]) -> None:
    c["exporters"]["kafka"]["traces"]["topics"] = "otlp_spans"


def _undefined_extension(c: dict[str, Any]) -> None:
    c["service"]["extensions"] = ["health_check", "pprof"]


def _misspelt_section(c: dict[str, Any]) -> None:
    c["exporter"] = c.pop("exporters")


@pytest.mark.parametrize("breaks", [
    _undefined_exporter, _undefined_processor, _unused_receiver, _bad_signal, _no_exporters,
    _deprecated_top_level_topic, _misspelt_signal_key, _undefined_extension, _misspelt_section])
def test_structure_checks_catch_broken_variants(config: dict[str, Any],
                                                breaks: Breakage) -> None:
    broken = copy.deepcopy(config)
    breaks(broken)
    assert collector_problems(broken) != []


def test_kafka_exporter_writes_what_spanwatch_reads(config: dict[str, Any],
                                                    compose: dict[str, Any]) -> None:
    exporter_id, exporter = kafka_exporter(config)
    assert {p.split("/")[0] for p in pipelines_using(config, exporter_id)} == {"traces", "logs"}
    defaults = KafkaSettings()
    env = environment(compose["services"]["spanwatch"])
    # Spans: spanwatch's default topic, and an encoding its decoder reads.
    assert exporter["traces"]["topic"] == defaults.spans_topic == "otlp_spans"
    assert env["SPANWATCH_KAFKA__SPANS_TOPIC"] == exporter["traces"]["topic"]
    decodable = set(typing.get_args(KafkaSettings.model_fields["encoding"].annotation))
    assert exporter["traces"]["encoding"] == "otlp_proto"
    assert exporter["traces"]["encoding"] in decodable
    # Logs (evaluation events): the collector's default topic, which compose hands spanwatch.
    assert exporter["logs"]["topic"] == "otlp_logs"
    assert exporter["logs"]["encoding"] == "otlp_proto"
    assert env["SPANWATCH_KAFKA__LOGS_TOPIC"] == exporter["logs"]["topic"]
    # kafka-init creates every topic before the collector or spanwatch touch them.
    created = set(environment(compose["services"]["kafka-init"])["TOPICS"].split())
    assert {exporter["traces"]["topic"], exporter["logs"]["topic"],
            env.get("SPANWATCH_KAFKA__DEAD_LETTER_TOPIC", defaults.dead_letter_topic)} <= created


def _internal_listener(compose: dict[str, Any]) -> str:
    """host:port of the kafka service's listener for other containers (inter-broker one)."""
    env = environment(compose["services"]["kafka"])
    listeners = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"]
                     .split(","))
    return listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]


def test_brokers_point_at_the_compose_kafka_service(config: dict[str, Any],
                                                    compose: dict[str, Any]) -> None:
    _, exporter = kafka_exporter(config)
    internal = _internal_listener(compose)
    assert internal.split(":")[0] in compose["services"]
    assert exporter["brokers"] == [internal]
    env = environment(compose["services"]["spanwatch"])
    assert env["SPANWATCH_KAFKA__BOOTSTRAP_SERVERS"] == internal
    assert f"--bootstrap-server {internal}" in " ".join(
        compose["services"]["kafka-init"]["command"])
    listeners = environment(compose["services"]["kafka"])["KAFKA_LISTENERS"]
    assert f"://:{internal.split(':')[1]}" in listeners


def test_otlp_receiver_listens_on_the_published_ports(config: dict[str, Any],
                                                      compose: dict[str, Any]) -> None:
    protocols = config["receivers"]["otlp"]["protocols"]
    collector = compose["services"]["otel-collector"]
    published = {p.container_port for p in published_ports(collector)}
    for protocol, port in (("grpc", 4317), ("http", 4318)):
        host, _, listen = protocols[protocol]["endpoint"].rpartition(":")
        # The collector's default host is localhost, unreachable from outside the container.
        assert host == "0.0.0.0"
        assert int(listen) == port
        assert port in published


def test_collector_reads_this_file(compose: dict[str, Any], tmp_path: Any) -> None:
    collector = compose["services"]["otel-collector"]
    image, _, tag = collector["image"].rpartition(":")
    assert image == "otel/opentelemetry-collector-contrib"  # the kafka exporter is contrib
    version = tuple(int(x) for x in re.findall(r"\d+", tag)[:3])
    assert version >= PER_SIGNAL_TOPICS_SINCE
    config_flag = next(a for a in collector["command"] if a.startswith("--config="))
    mounted = map_path(config_flag.split("=", 1)[1], container_to_host(collector, REPO, tmp_path))
    assert mounted == COLLECTOR_CONFIG.resolve()
