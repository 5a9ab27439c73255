"""docker-compose.yml, checked without a Docker engine: against the Compose Specification
schema (vendored, see tests/data/compose-spec.PROVENANCE.md), for references the schema cannot
see, and against spanwatch's own settings (environment names, state on volumes, secrets,
healthcheck)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from notify.config import NotifySettings
from notify.runtime import MissingSecretError, build_notifier
from rules.load import load_rules
from spanwatch.observability import Health, ObservabilityServer
from spanwatch.settings import Settings
from tests.deploy.files import (
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    DOCKERFILE,
    REPO,
    compose_problems,
    container_to_host,
    environment,
    load_yaml,
    map_path,
    mounts,
    parse_dockerfile,
    published_ports,
)

PROVENANCE = REPO / "tests" / "data" / "compose-spec.PROVENANCE.md"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(validator: Draft202012Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


def test_vendored_schema_is_the_one_recorded_in_its_provenance() -> None:
    recorded = re.search(r"\| file sha256 \| `([0-9a-f]{64})` \|",
                         PROVENANCE.read_text(encoding="utf-8"))
    assert recorded is not None
    assert hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest() == recorded.group(1)


def test_compose_file_matches_the_compose_specification(
        compose: dict[str, Any], validator: Draft202012Validator) -> None:
    assert schema_errors(validator, compose) == []


def _typo_key(doc: dict[str, Any]) -> None:
    spanwatch = doc["services"]["spanwatch"]
    spanwatch["enviroment"] = spanwatch.pop("environment")


def _bad_condition(doc: dict[str, Any]) -> None:
    doc["services"]["spanwatch"]["depends_on"]["kafka"]["condition"] = "service_ready"


def _numeric_interval(doc: dict[str, Any]) -> None:
    doc["services"]["spanwatch"]["healthcheck"]["interval"] = 15


def _env_file_without_path(doc: dict[str, Any]) -> None:
    doc["services"]["spanwatch"]["env_file"] = [{"required": True}]


def _volumes_as_string(doc: dict[str, Any]) -> None:
    doc["volumes"] = "kafka-data"


@pytest.mark.parametrize("breaks", [_typo_key, _bad_condition, _numeric_interval,
                                    _env_file_without_path, _volumes_as_string])
def test_schema_rejects_broken_variants(compose: dict[str, Any], validator: Draft202012Validator,
                                        breaks: Any) -> None:
    broken = copy.deepcopy(compose)
    breaks(broken)
    assert schema_errors(validator, broken) != []


def test_references_resolve(compose: dict[str, Any]) -> None:
    assert compose_problems(compose, REPO) == []


@pytest.mark.parametrize(("service", "change", "expected"), [
    ("spanwatch", {"env_file": ["deploy/missing.env"]}, "env_file deploy/missing.env"),
    ("spanwatch", {"volumes": ["./no-such-rules.toml:/etc/spanwatch/alerts.toml:ro"]},
     "mounted ./no-such-rules.toml does not exist"),
    ("spanwatch", {"volumes": ["undeclared:/var/lib/spanwatch"]},
     "volume undeclared is not declared"),
    ("spanwatch", {"depends_on": {"zookeeper": {"condition": "service_started"}}},
     "depends_on unknown service zookeeper"),
    ("spanwatch", {"ports": ["4318:9464"]}, "host port 4318/tcp is published by both"),
    ("spanwatch", {"ports": ["127.0.0.1:9094:9464"]}, "host port 9094/tcp"),
    ("kafka", {"depends_on": ["spanwatch"]}, "depends_on cycle"),
    ("spanwatch", {"depends_on": {"otel-collector": {"condition": "service_healthy"}}},
     "waits for otel-collector to be healthy, which has no healthcheck"),
    ("kafka-init", {"restart": "on-failure"}, "waits for kafka-init to complete, which restarts"),
    ("spanwatch", {"build": "deploy"}, "build has no Dockerfile in deploy"),
])
def test_reference_checks_catch_broken_variants(compose: dict[str, Any], service: str,
                                                change: dict[str, Any], expected: str) -> None:
    broken = copy.deepcopy(compose)
    target = broken["services"][service]
    for key, value in change.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    problems = compose_problems(broken, REPO)
    assert any(expected in p for p in problems), problems


def test_published_ports_are_what_the_readme_promises(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {(name, p.host_port): p.container_port
                 for name, service in services.items() for p in published_ports(service)}
    assert published[("otel-collector", 4317)] == 4317
    assert published[("otel-collector", 4318)] == 4318
    port = Settings.model_fields["http_port"].default
    assert published[("spanwatch", port)] == port
    assert environment(services["spanwatch"])["SPANWATCH_HTTP_PORT"] == str(port)
    exposed = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[-1].all("EXPOSE")
    assert str(port) in " ".join(exposed).split()


def _settings_paths(model: type[Any], prefix: str = "SPANWATCH_") -> set[str]:
    """Every environment name pydantic-settings reads for a (nested) settings field."""
    names = set()
    for name, info in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        names.add(env)
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            names |= _settings_paths(annotation, f"{env}__")
    return names


def test_spanwatch_environment_names_real_settings(compose: dict[str, Any]) -> None:
    # Settings ignores unknown SPANWATCH_* names, so a misspelt one would be silently lost.
    known = _settings_paths(Settings)
    names = set(environment(compose["services"]["spanwatch"]))
    assert names <= known, names - known
    assert "SPANWATCH_KAFKA__SPANS_TOPC" not in known  # the check can tell a typo


def compose_settings(compose: dict[str, Any], volumes: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the container sees them, container paths mapped onto this machine."""
    spanwatch = compose["services"]["spanwatch"]
    table = container_to_host(spanwatch, REPO, volumes)
    monkeypatch.chdir(volumes)  # no developer .env is read
    for key, value in environment(spanwatch).items():
        mapped = map_path(value, table) if value.startswith("/") else None
        monkeypatch.setenv(key, str(mapped) if mapped else value)
    return Settings()


def test_state_lives_on_named_volumes(compose: dict[str, Any], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spanwatch = compose["services"]["spanwatch"]
    settings = compose_settings(compose, tmp_path, monkeypatch)
    workdir = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[-1].last("WORKDIR")
    assert workdir is not None
    named = {Path(m.target) for m in mounts(spanwatch) if not m.is_bind}
    assert settings.recovery.directory is not None, "recovery is off in docker-compose.yml"
    state = {
        "notify.outbox_path": settings.notify.outbox_path,
        "notify.digest_path": settings.notify.digest_path,
        "notify.digest_dir": settings.notify.digest_dir,
        "silences_file": settings.silences_file,
    }
    for what, path in state.items():
        in_container = path if path.is_absolute() else Path(workdir) / path
        assert any(v == in_container or v in in_container.parents for v in named), \
            f"{what} ({in_container}) is not on a named volume"
    # The recovery directory was mapped from a container path on a named volume.
    assert tmp_path in settings.recovery.directory.parents
    assert settings.rules_file == (REPO / "alerts.toml").resolve()


def test_env_example_names_every_secret_the_shipped_rules_need(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = REPO / ".env.example"
    names = []
    for line in example.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            assert match.group(2) == "", f"{match.group(1)}: .env.example holds a value"
            names.append(match.group(1))
    assert names
    receivers = load_rules(REPO / "alerts.toml").receivers
    settings = NotifySettings(digest_path=tmp_path / "digest.sqlite3",
                              outbox_path=tmp_path / "outbox.sqlite3")
    monkeypatch.chdir(tmp_path)  # env_secret() also reads ./.env: keep a developer's out
    for name in names:
        monkeypatch.delenv(name, raising=False)
    needs_secret = [n for n, r in receivers.items() if r.kind in ("pagerduty", "slack")]
    assert needs_secret
    for name in needs_secret:  # without .env, startup would refuse these receivers
        with pytest.raises(MissingSecretError):
            build_notifier(name, receivers[name], settings)
    uncommented = [n for n in names
                   if f"\n{n}=" in "\n" + example.read_text(encoding="utf-8")]
    for name in uncommented:
        monkeypatch.setenv(name, f"placeholder-for-{name.lower()}")
    for name, receiver in receivers.items():
        build_notifier(name, receiver, settings)  # raises if .env.example misses a secret


def _healthcheck_rc(argv: list[str], port: int) -> int:
    python = Path(sys.executable)
    resolved = [str(python) if argv[0] == "python" else argv[0], *argv[1:]]
    return subprocess.run(resolved, env={"SPANWATCH_HTTP_PORT": str(port)},
                          capture_output=True, timeout=20, check=False).returncode


def test_healthcheck_follows_healthz(compose: dict[str, Any]) -> None:
    test = compose["services"]["spanwatch"]["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form: the image needs no shell features for it"
    argv = test[1:]
    health = Health(running=True)
    server = ObservabilityServer("127.0.0.1", 0, health)
    server.start()
    try:
        assert _healthcheck_rc(argv, server.port) == 0
        health.running = False  # the flow stopped or crashed: /healthz answers 503
        assert _healthcheck_rc(argv, server.port) != 0
    finally:
        server.stop()
    assert _healthcheck_rc(argv, server.port) != 0  # nothing listening
