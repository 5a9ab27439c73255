"""The Dockerfile, checked without a Docker engine: what it COPYs exists and covers every
package pyproject installs, and its ENTRYPOINT + CMD, run from this project's venv (the
image's /opt/venv) with the image's and compose's environment mapped onto this machine, does
what the container would: `--help`, `check` of the rules the image uses, and `run` against a
broker until the compose healthcheck passes and the compose stop signal ends it cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.broker import KafkaUnderTest, new_topic
from tests.deploy.files import (
    COMPOSE_FILE,
    DOCKERFILE,
    REPO,
    Stage,
    container_to_host,
    copies,
    dockerfile_problems,
    environment,
    exec_form,
    load_yaml,
    map_path,
    parse_dockerfile,
    stage_env,
)

IMAGE_VENV = PurePosixPath("/opt/venv")
VENV = Path(sys.prefix)  # the project's venv stands in for the image's
TEXT = DOCKERFILE.read_text(encoding="utf-8")


def final_stage() -> Stage:
    return parse_dockerfile(TEXT)[-1]


def image_paths() -> dict[PurePosixPath, Path]:
    """Image paths that come from this repo or the venv, as this machine has them."""
    stages = parse_dockerfile(TEXT)
    # The venv is built (`pip install .`) in an earlier stage and copied whole.
    assert any(c.from_stage is not None and PurePosixPath(c.dest) == IMAGE_VENV
               for c in copies(stages[-1]))
    assert any(f"venv {IMAGE_VENV}" in run for s in stages[:-1] for run in s.all("RUN"))
    table = {IMAGE_VENV: VENV}
    for copy in copies(final_stage()):
        if copy.from_stage is None and len(copy.sources) == 1:
            table[PurePosixPath(copy.dest)] = (REPO / copy.sources[0]).resolve()
    return table


def entrypoint_command() -> list[str]:
    """ENTRYPOINT + CMD of the image, the executable resolved through the image's PATH."""
    stage = final_stage()
    entrypoint = exec_form(stage.last("ENTRYPOINT") or "")
    cmd = exec_form(stage.last("CMD") or "[]")
    assert entrypoint is not None and cmd is not None
    table = image_paths()
    for entry in stage_env(stage)["PATH"].split(":"):
        mapped = map_path(entry, table) if entry.startswith("/") else None
        if mapped is not None and (mapped / entrypoint[0]).is_file():
            return [str(mapped / entrypoint[0]), *entrypoint[1:], *cmd]
    raise AssertionError(f"{entrypoint[0]} is not on the image's PATH")


def entrypoint_only() -> list[str]:
    cmd = exec_form(final_stage().last("CMD") or "[]") or []
    full = entrypoint_command()
    return full[:len(full) - len(cmd)]


def spanwatch_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This machine's environment without SPANWATCH_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANWATCH_")}
    return {**env, **extra}


def image_env(table: Mapping[PurePosixPath, Path], *layers: Mapping[str, str]) -> dict[str, str]:
    """Environment layers (Dockerfile ENV, then compose), container paths mapped."""
    out = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "PATH":
                continue
            mapped = map_path(value, table) if value.startswith("/") else None
            out[key] = str(mapped) if mapped is not None else value
    return out


def run(argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=dict(env), cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_dockerfile_problems() -> None:
    assert dockerfile_problems(TEXT, REPO) == []


@pytest.mark.parametrize(("edit", "expected"), [
    (("COPY notify ./notify\n", ""), "package notify (pyproject) is not copied"),
    (("COPY rules ./rules\n", "COPY rulez ./rules\n"), "COPY rulez: not in the build context"),
    (('CMD ["run"]', "CMD spanwatch run"), "CMD spanwatch run: shell form"),
])
def test_dockerfile_checks_catch_broken_variants(edit: tuple[str, str], expected: str) -> None:
    old, new = edit
    assert old in TEXT
    problems = dockerfile_problems(TEXT.replace(old, new), REPO)
    assert any(expected in p for p in problems), problems


def test_dockerignore_keeps_secrets_and_the_venv_out() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".venv", ".git"} <= set(ignored)


def test_entry_point_runs(tmp_path: Path) -> None:
    env = spanwatch_env({})
    full = run([*entrypoint_command(), "--help"], env, tmp_path)
    assert full.returncode == 0, full.stderr
    assert "Consume the spans topic" in full.stdout  # CMD is the `run` subcommand
    bare = run([*entrypoint_only(), "--help"], env, tmp_path)
    assert bare.returncode == 0, bare.stderr
    typo = run([*entrypoint_only(), "runn"], env, tmp_path)
    assert typo.returncode == 2  # a CMD that is no subcommand fails


def test_entry_point_checks_the_rules_the_container_uses(tmp_path: Path) -> None:
    compose = load_yaml(COMPOSE_FILE)["services"]["spanwatch"]
    table = {**image_paths(), **container_to_host(compose, REPO, tmp_path)}
    env = image_env(table, stage_env(final_stage()), environment(compose))
    assert Path(env["SPANWATCH_RULES_FILE"]) == (REPO / "alerts.toml").resolve()
    ok = run([*entrypoint_only(), "check"], spanwatch_env(env), tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{env['SPANWATCH_RULES_FILE']}: ok")
    bad = REPO / "tests" / "data" / "bad_alerts" / "receiver_not_defined.toml"
    broken = run([*entrypoint_only(), "check"],
                  spanwatch_env({**env, "SPANWATCH_RULES_FILE": str(bad)}), tmp_path)
    assert broken.returncode == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def _secrets_placeholders() -> dict[str, str]:
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=$", (REPO / ".env.example").read_text(
        encoding="utf-8"), flags=re.MULTILINE)
    return dict.fromkeys(names, "http://127.0.0.1:9/placeholder")  # nothing listens on 9


@pytest.mark.kafka
def test_run_is_healthy_and_stops_on_the_compose_stop_signal(kafka: KafkaUnderTest,
                                                             tmp_path: Path) -> None:
    service: dict[str, Any] = load_yaml(COMPOSE_FILE)["services"]["spanwatch"]
    volumes = tmp_path / "volumes"
    table = {**image_paths(), **container_to_host(service, REPO, volumes)}
    workdir = map_path(final_stage().last("WORKDIR") or "/", table)
    assert workdir is not None, "the image's WORKDIR is not on a volume"
    workdir.mkdir(parents=True)
    port = _free_port()
    env = image_env(table, stage_env(final_stage()), _secrets_placeholders(),
                    environment(service))
    env |= {  # this machine's broker, fresh topics and a free port instead of compose's
        "SPANWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "SPANWATCH_KAFKA__SPANS_TOPIC": new_topic(kafka, partitions=3),
        "SPANWATCH_KAFKA__LOGS_TOPIC": new_topic(kafka),
        "SPANWATCH_KAFKA__DEAD_LETTER_TOPIC": new_topic(kafka),
        "SPANWATCH_HTTP_PORT": str(port),
    }
    if kafka.is_embedded:
        env["SPANWATCH_KAFKA__FETCH_WAIT_MAX_MS"] = "10"
    health = service["healthcheck"]
    probe = [sys.executable if a == "python" else a for a in health["test"][1:]]
    deadline = _seconds(health["start_period"]) + \
        _seconds(health["interval"]) * int(health["retries"])
    with (tmp_path / "stderr.log").open("w") as log:
        proc = subprocess.Popen(entrypoint_command(), env=spanwatch_env(env), cwd=workdir,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            started = time.monotonic()
            healthy = False
            while time.monotonic() - started < deadline and proc.poll() is None:
                if run(probe, spanwatch_env(env), workdir).returncode == 0:
                    healthy = True
                    break
                time.sleep(0.5)
            output = (tmp_path / "stderr.log").read_text()
            assert healthy, f"never healthy (exit {proc.poll()}):\n{output[-3000:]}"
            # State went to the volume: outbox (relative default) and recovery partitions.
            assert (workdir / "spanwatch-state" / "outbox.sqlite3").is_file()
            recovery = Path(env["SPANWATCH_RECOVERY__DIRECTORY"])
            assert volumes in recovery.parents
            assert list(recovery.glob("part-*.sqlite3"))
            proc.send_signal(getattr(signal, service.get("stop_signal", "SIGTERM")))
            rc = proc.wait(timeout=_seconds(service.get("stop_grace_period", "10s")))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = (tmp_path / "stderr.log").read_text()
    assert rc == 0, output[-3000:]
    assert run(probe, spanwatch_env(env), workdir).returncode != 0  # stopped: unhealthy
