"""Readers and checks for the deploy files, without a Docker engine.

`docker-compose.yml`, the `Dockerfile` and `deploy/otel-collector.yaml` are only used inside
containers, so nothing else would notice a dangling reference, a port clash or a collector
pipeline naming an undefined exporter. The `*_problems` functions return what is wrong as
sentences (empty: nothing found), so the tests can show them failing on broken variants too.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
COLLECTOR_CONFIG = REPO / "deploy" / "otel-collector.yaml"
COMPOSE_SCHEMA = REPO / "tests" / "data" / "compose-spec.json"

Doc = dict[str, Any]


def load_yaml(path: Path) -> Doc:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise TypeError(f"{path}: expected a mapping at the top, got {type(loaded).__name__}")
    return cast(Doc, loaded)


# --- docker-compose.yml ------------------------------------------------------------------


@dataclass(frozen=True)
class EnvFile:
    path: str
    required: bool


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    is_bind: bool


@dataclass(frozen=True)
class PublishedPort:
    host_ip: str  # "" = every interface
    host_port: int
    container_port: int
    protocol: str


def env_files(service: Mapping[str, Any]) -> list[EnvFile]:
    """`env_file` in its three spellings: a string, a list of strings, a list of objects."""
    raw = service.get("env_file")
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else list(raw)
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(EnvFile(item, True))
        else:
            required = item.get("required", True)
            out.append(EnvFile(item["path"], required not in (False, "false")))
    return out


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    """Service volumes, short (`src:dst[:mode]`) or long syntax; anonymous ones are left out."""
    out = []
    for item in service.get("volumes", []):
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                continue  # anonymous volume: nothing to resolve
            source, target = parts[0], parts[1]
            is_bind = source.startswith((".", "/", "~"))
        else:
            if "source" not in item:
                continue
            source, target = item["source"], item["target"]
            is_bind = item.get("type", "volume") == "bind"
        out.append(Mount(source, target, is_bind))
    return out


def _port_range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def published_ports(service: Mapping[str, Any]) -> list[PublishedPort]:
    """Host ports a service publishes (short `[ip:]host:container[/proto]` or long syntax)."""
    out: list[PublishedPort] = []
    for item in service.get("ports", []):
        if isinstance(item, dict):
            if "published" not in item:
                continue
            hosts = _port_range(str(item["published"]))
            containers = _port_range(str(item["target"]))
            ip, protocol = str(item.get("host_ip", "")), str(item.get("protocol", "tcp"))
        else:
            spec, _, protocol = str(item).partition("/")
            parts = spec.split(":")
            if len(parts) == 1:
                continue  # container port only: the host port is random
            ip = parts[0] if len(parts) == 3 else ""
            hosts, containers = _port_range(parts[-2]), _port_range(parts[-1])
            protocol = protocol or "tcp"
        if len(containers) == 1:
            containers = containers * len(hosts)
        out.extend(PublishedPort(ip, h, c, protocol) for h, c in zip(hosts, containers,
                                                                      strict=True))
    return out


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Dependency -> condition (the short list form means `service_started`)."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """`environment` as a dict (the list form is `KEY=VALUE`); values as compose passes them."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(item.partition("=")[::2] for item in raw)
    return {key: "" if value is None else _scalar(value) for key, value in raw.items()}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _gitignored(base_dir: Path, relative: str) -> bool:
    gitignore = base_dir / ".gitignore"
    if not gitignore.is_file():
        return False
    patterns = [line.strip() for line in gitignore.read_text(encoding="utf-8").splitlines()]
    return any(p and not p.startswith("#") and fnmatch.fnmatch(relative, p.lstrip("/"))
               for p in patterns)


def _cycles(graph: Mapping[str, Iterable[str]]) -> list[str]:
    found: list[str] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                found.append(" -> ".join([*path, node, nxt]))
            elif nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
    return found


def compose_problems(doc: Mapping[str, Any], base_dir: Path) -> list[str]:
    """What `docker compose up` would trip over that the schema cannot see."""
    problems: list[str] = []
    services: Mapping[str, Any] = doc.get("services", {})
    declared_volumes = set(doc.get("volumes") or {})
    for name, service in services.items():
        for env_file in env_files(service):
            path = base_dir / env_file.path
            if path.is_file() or not env_file.required:
                continue
            # A secrets file is git-ignored by design; then its template must be there.
            example = base_dir / f"{env_file.path}.example"
            if not (_gitignored(base_dir, env_file.path) and example.is_file()):
                problems.append(f"{name}: env_file {env_file.path} does not exist (nor a "
                                f"git-ignored secrets file with {example.name})")
        for mount in mounts(service):
            if mount.is_bind and not (base_dir / mount.source).exists():
                problems.append(f"{name}: mounted {mount.source} does not exist")
            if not mount.is_bind and mount.source not in declared_volumes:
                problems.append(f"{name}: volume {mount.source} is not declared under volumes")
        for dependency, condition in depends_on(service).items():
            if dependency not in services:
                problems.append(f"{name}: depends_on unknown service {dependency}")
                continue
            target = services[dependency]
            if condition == "service_healthy" and "healthcheck" not in target:
                problems.append(f"{name}: waits for {dependency} to be healthy, which has no "
                                "healthcheck")
            if condition == "service_completed_successfully" \
                    and str(target.get("restart", "no")) != "no":
                problems.append(f"{name}: waits for {dependency} to complete, which restarts "
                                f"({target['restart']})")
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) \
                else build.get("dockerfile", "Dockerfile")
            if not (base_dir / context / dockerfile).is_file():
                problems.append(f"{name}: build has no {dockerfile} in {context}")
    problems.extend(f"depends_on cycle: {cycle}" for cycle in _cycles(
        {name: depends_on(service) for name, service in services.items()}))
    problems.extend(_port_clashes(services))
    return problems


def _port_clashes(services: Mapping[str, Any]) -> list[str]:
    problems = []
    taken: list[tuple[str, PublishedPort]] = []
    for name, service in services.items():
        for port in published_ports(service):
            for other_name, other in taken:
                same_ip = not port.host_ip or not other.host_ip or port.host_ip == other.host_ip
                if same_ip and (port.host_port, port.protocol) == (other.host_port,
                                                                   other.protocol):
                    problems.append(f"host port {port.host_port}/{port.protocol} is published "
                                    f"by both {other_name} and {name}")
            taken.append((name, port))
    return problems


def container_to_host(service: Mapping[str, Any], base_dir: Path,
                      named_volume_dir: Path) -> dict[PurePosixPath, Path]:
    """Where each mount target of `service` lives on this machine: binds in the repo, named
    volumes under `named_volume_dir/<name>` (what a test uses in their place)."""
    out: dict[PurePosixPath, Path] = {}
    for mount in mounts(service):
        host = base_dir / mount.source if mount.is_bind else named_volume_dir / mount.source
        out[PurePosixPath(mount.target)] = host.resolve() if mount.is_bind else host
    return out


def map_path(value: str, table: Mapping[PurePosixPath, Path]) -> Path | None:
    """A container path translated through `table` (longest mount first); None if unmapped."""
    path = PurePosixPath(value)
    for target in sorted(table, key=lambda p: len(p.parts), reverse=True):
        if path == target or target in path.parents:
            return table[target].joinpath(*path.parts[len(target.parts):])
    return None


# --- Dockerfile --------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"Dockerfile: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form ENTRYPOINT/CMD/RUN, or None for the shell form."""
    if not args.startswith("["):
        return None
    parsed = json.loads(args)
    if not (isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)):
        raise ValueError(f"not a JSON array of strings: {args}")
    return cast(list[str], parsed)


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def stage_env(stage: Stage) -> dict[str, str]:
    """ENV of a stage, `$VAR` expanded from earlier ENVs (unknown ones are kept as written)."""
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        words = shlex.split(args)
        pairs = [w.partition("=")[::2] for w in words] if "=" in words[0] \
            else [(words[0], " ".join(words[1:]))]
        for key, value in pairs:
            env[key] = _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), value)
    return env


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str
    from_stage: str | None


def copies(stage: Stage) -> list[Copy]:
    out = []
    for keyword in ("COPY", "ADD"):
        for args in stage.all(keyword):
            words = exec_form(args) or shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")),
                              None)
            out.append(Copy(tuple(paths[:-1]), paths[-1], from_stage))
    return out


def dockerfile_problems(text: str, context: Path) -> list[str]:
    """COPY sources missing from the build context, packages pyproject installs that are
    not copied into the image, and a shell-form entry point."""
    problems: list[str] = []
    stages = parse_dockerfile(text)
    copied: set[str] = set()
    for stage in stages:
        for copy in copies(stage):
            if copy.from_stage is not None:
                continue
            for source in copy.sources:
                if not any(context.glob(source)):
                    problems.append(f"COPY {source}: not in the build context")
                copied.add(PurePosixPath(source).parts[0])
    problems.extend(f"package {package} (pyproject) is not copied into the image"
                    for package in sorted(installed_packages(context) - copied))
    final = stages[-1]
    for keyword in ("ENTRYPOINT", "CMD"):
        args = final.last(keyword)
        if args is not None and exec_form(args) is None:
            problems.append(f"{keyword} {args}: shell form (signals would go to /bin/sh, "
                            "not spanwatch); use the JSON exec form")
    return problems


def installed_packages(root: Path) -> set[str]:
    """Top-level packages that `[tool.setuptools.packages.find]` installs from `root`."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return {d.name for d in root.iterdir()
            if (d / "__init__.py").is_file() and any(fnmatch.fnmatch(d.name, p)
                                                     for p in include)}


# --- deploy/otel-collector.yaml ------------------------------------------------------------

SECTIONS = ("receivers", "processors", "exporters", "extensions", "connectors")
SIGNALS = ("traces", "metrics", "logs", "profiles")
# Keys each component we use accepts (the collector refuses unknown keys at startup), from
# the components' READMEs in opentelemetry-collector(-contrib) v0.140.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "otlp": frozenset({"protocols"}),
    "batch": frozenset({"timeout", "send_batch_size", "send_batch_max_size", "metadata_keys",
                        "metadata_cardinality_limit"}),
    "memory_limiter": frozenset({"check_interval", "limit_mib", "spike_limit_mib",
                                 "limit_percentage", "spike_limit_percentage"}),
    "health_check": frozenset({"endpoint", "path", "tls", "response_body",
                               "check_collector_pipeline"}),
    "kafka": frozenset({
        "brokers", "protocol_version", "resolve_canonical_bootstrap_servers_only", "client_id",
        "conn_idle_timeout", "traces", "logs", "metrics", "profiles", "topic_from_attribute",
        "include_metadata_keys", "partition_traces_by_id",
        "partition_metrics_by_resource_attributes", "partition_logs_by_resource_attributes",
        "tls", "auth", "metadata", "timeout", "retry_on_failure", "sending_queue", "producer"}),
}
KAFKA_SIGNAL_KEYS = frozenset({"topic", "encoding", "topic_from_metadata_key"})
COMPONENT_ID = re.compile(r"^[a-z0-9_]+(/[^\s/]+)?$")


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def collector_problems(config: Mapping[str, Any]) -> list[str]:
    """Structure the collector checks at startup: known sections, `type[/name]` ids, every
    pipeline component defined (in the right section), every defined one used, known keys."""
    problems = [f"unknown top-level section {key}" for key in config
                if key not in (*SECTIONS, "service")]
    defined: dict[str, Mapping[str, Any]] = {s: config.get(s) or {} for s in SECTIONS}
    for section, components in defined.items():
        for component_id, body in components.items():
            if not COMPONENT_ID.match(component_id):
                problems.append(f"{section}: {component_id!r} is not a type[/name] id")
            known = KNOWN_KEYS.get(component_type(component_id))
            if known is not None:
                problems.extend(f"{section}.{component_id}: unknown key {key}"
                                for key in (body or {}) if key not in known)
    service = config.get("service") or {}
    used: dict[str, set[str]] = {s: set() for s in SECTIONS}
    for extension in service.get("extensions", []):
        used["extensions"].add(extension)
        if extension not in defined["extensions"]:
            problems.append(f"service.extensions: {extension} is not defined")
    pipelines: Mapping[str, Any] = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines is empty")
    for pipeline_id, pipeline in pipelines.items():
        if component_type(pipeline_id) not in SIGNALS:
            problems.append(f"pipeline {pipeline_id}: not one of {', '.join(SIGNALS)}")
        for role in ("receivers", "exporters"):
            if not (pipeline or {}).get(role):
                problems.append(f"pipeline {pipeline_id}: no {role}")
        for role in ("receivers", "processors", "exporters"):
            for component_id in (pipeline or {}).get(role, []):
                section = "connectors" if component_id in defined["connectors"] else role
                used[section].add(component_id)
                if component_id not in defined[section]:
                    problems.append(f"pipeline {pipeline_id}: {role[:-1]} {component_id} is "
                                    "not defined")
    for section, components in defined.items():
        problems.extend(f"{section}.{component_id} is defined but not used"
                        for component_id in components if component_id not in used[section])
    problems.extend(_kafka_exporter_problems(defined["exporters"]))
    return problems


def _kafka_exporter_problems(exporters: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for component_id, body in exporters.items():
        if component_type(component_id) != "kafka":
            continue
        for signal in SIGNALS:
            problems.extend(f"exporters.{component_id}.{signal}: unknown key {key}"
                            for key in (body or {}).get(signal) or {}
                            if key not in KAFKA_SIGNAL_KEYS)
    return problems


def pipelines_using(config: Mapping[str, Any], exporter_id: str) -> list[str]:
    pipelines: Mapping[str, Any] = config["service"]["pipelines"]
    return [pid for pid, p in pipelines.items() if exporter_id in p.get("exporters", [])]
