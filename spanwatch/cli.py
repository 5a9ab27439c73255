"""`spanwatch` command line: run | demo | inspect | check | silence.

Results go to stdout, logs to stderr. Exit codes: 0 ok, 1 runtime failure, 2 usage or config
error. Every option falls back to a `SPANWATCH_*` environment variable (shown in `--help`);
secrets are read only from the environment or `.env`, never from the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from spanwatch.cli_ops import add_commands, run_command

if TYPE_CHECKING:
    from rules.silences import Silence

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("spanwatch")


def _env_default(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spanwatch",
        description="Streaming anomaly detection and tiered alerting for LLM applications.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="consume GenAI spans from Kafka and process them until stopped",
        description="Consume the spans topic with the Bytewax flow. Kafka, topics and secrets "
                    "come from SPANWATCH_* variables (see README, Configuration).")
    run.add_argument("--bootstrap-servers",
                     default=_env_default("SPANWATCH_KAFKA__BOOTSTRAP_SERVERS"),
                     help="Kafka host:port list [env SPANWATCH_KAFKA__BOOTSTRAP_SERVERS]")
    run.add_argument("--spans-topic", default=_env_default("SPANWATCH_KAFKA__SPANS_TOPIC"),
                     help="topic with OTLP spans [env SPANWATCH_KAFKA__SPANS_TOPIC, "
                          "default otlp_spans]")
    run.add_argument("--output-file", type=Path,
                     default=_env_default("SPANWATCH_OUTPUT_FILE"),
                     help="append every normalised record as a JSON line "
                          "[env SPANWATCH_OUTPUT_FILE]")
    run.add_argument("--workers", type=int, default=int(_env_default("SPANWATCH_WORKERS", "1")
                                                        or 1),
                     help="worker threads in this process [env SPANWATCH_WORKERS, default 1]")

    demo = commands.add_parser(
        "demo", help="run the whole flow on an embedded broker with generated traffic",
        description="Start an embedded Kafka-compatible broker, publish realistic GenAI span "
                    "traffic with an injected incident, run the real flow over it, print what "
                    "it found and write it to --out. Needs no configuration.")
    demo.add_argument("--out", type=Path,
                      default=Path(_env_default("SPANWATCH_DEMO_OUT", "spanwatch-demo")
                                   or "spanwatch-demo"),
                      help="directory for the results [env SPANWATCH_DEMO_OUT, "
                           "default ./spanwatch-demo]")
    demo.add_argument("--minutes", type=int, default=45, help="minutes of traffic (default 45)")
    demo.add_argument("--rules", type=Path, default=Path(_env_default(
        "SPANWATCH_RULES_FILE", "alerts.toml") or "alerts.toml"),
        help="rules to apply [env SPANWATCH_RULES_FILE, default alerts.toml]")
    demo.add_argument("--format", choices=("text", "json"), default="text",
                      help="stdout format (default text)")

    inspect = commands.add_parser(
        "inspect", help="print the normalised spans of recorded OTLP files, one JSON per line",
        description="Read OpenTelemetry Collector file-exporter recordings (OTLP JSON lines, or "
                    "OTLP protobuf with a 4-byte big-endian length before each message) and "
                    "print what spanwatch understands of each span. Content is stripped.")
    inspect.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _add_rules_commands(commands)
    add_commands(commands)
    return parser


def _rules_file_default() -> Path:
    return Path(_env_default("SPANWATCH_RULES_FILE", "alerts.toml") or "alerts.toml")


def _add_rules_commands(commands: Any) -> None:
    check = commands.add_parser(
        "check", help="validate an alerts.toml and report every error",
        description="Validate the rules file as startup and hot reload do: every error on "
                    "stderr as FILE:LINE: where: what, sorted by line. Exit 0 valid, 2 invalid.")
    check.add_argument("file", nargs="?", type=Path, default=_rules_file_default(),
                       metavar="FILE",
                       help="rules file [env SPANWATCH_RULES_FILE, default alerts.toml]")
    check.add_argument("--format", choices=("text", "json"), default="text",
                       help="stdout format (default text)")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--silences", type=Path,
                        default=Path(_env_default("SPANWATCH_SILENCES_FILE", "silences.json")
                                     or "silences.json"),
                        help="silences file [env SPANWATCH_SILENCES_FILE, default "
                             "silences.json]")
    common.add_argument("--format", choices=("text", "json"), default="text",
                        help="stdout format (default text)")
    silence = commands.add_parser(
        "silence", help="mute matching alerts for a while: add | list | expire",
        description="Silences mute alerts whose labels match every matcher (`rule` is the "
                    "rule name) between two instants; alerts keep their state, only "
                    "notifications stop.")
    actions = silence.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="add a silence")
    add.add_argument("--matcher", action="append", required=True, metavar="MATCHER",
                     help="name=value, name!=value, name=~regex or name!~regex; repeat to "
                          "require several, e.g. --matcher rule=error-rate-high "
                          "--matcher service=checkout")
    add.add_argument("--duration", default="2h", help="length from the start (default 2h)")
    add.add_argument("--ends-at", help="end (UTC ISO 8601, e.g. 2026-03-01T18:00:00Z) "
                                       "instead of --duration")
    add.add_argument("--starts-at", help="start (UTC ISO 8601; default now)")
    add.add_argument("--author", default=_env_default("SPANWATCH_SILENCE_AUTHOR",
                                                      _env_default("USER")),
                     help="who adds it [env SPANWATCH_SILENCE_AUTHOR, default $USER]")
    add.add_argument("--comment", required=True, help="why (shown with every muted alert)")
    add.add_argument("--rules", type=Path, default=_rules_file_default(),
                     help="warn about matchers naming a rule or label this rules file does "
                          "not have [env SPANWATCH_RULES_FILE, default alerts.toml]")
    listing = actions.add_parser("list", parents=[common],
                                 help="list active and pending silences")
    listing.add_argument("--all", action="store_true", help="include expired silences")
    expire = actions.add_parser("expire", parents=[common], help="end a silence now")
    expire.add_argument("id", metavar="ID", help="silence id (or a unique prefix of it)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spanwatch` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("SPANWATCH_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    try:
        if args.command == "inspect":
            return _inspect(args.files)
        if args.command == "demo":
            from spanwatch.demo import run_demo  # noqa: PLC0415 - keeps `inspect` start fast

            return run_demo(out_dir=args.out, minutes=args.minutes, output_format=args.format,
                            rules_file=args.rules)
        if args.command == "run":
            return _run(args)
        if args.command == "check":
            return _check(args.file, args.format)
        if args.command == "silence":
            return _silence(args)
        handled = run_command(args)
        if handled is not None:
            return handled
    except ValidationError as exc:
        print(f"spanwatch: configuration error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        # Bytewax reports SIGINT (Ctrl-C, `docker compose stop`) as a BytewaxRuntimeError
        # caused by KeyboardInterrupt: a requested stop, not a failure.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            log.info("stopped by signal")
            return EXIT_OK
        raise
    return EXIT_USAGE


def _inspect(files: Sequence[Path]) -> int:
    from ingest.config import IngestConfig  # noqa: PLC0415
    from ingest.inspect import inspect_files  # noqa: PLC0415
    from ingest.recorded import RecordingError  # noqa: PLC0415
    from spanwatch.settings import Settings  # noqa: PLC0415

    settings = Settings()
    config: IngestConfig = settings.ingest
    failures = 0
    try:
        for line in inspect_files(files, config):
            if line.error is not None:
                failures += 1
                print(f"spanwatch inspect: {line.error}", file=sys.stderr)
            else:
                print(json.dumps(line.record, sort_keys=False))
    except (OSError, RecordingError) as exc:
        print(f"spanwatch inspect: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_FAILURE if failures else EXIT_OK


def _check(file: Path, output_format: str) -> int:
    from rules.load import RulesError, load_rules  # noqa: PLC0415

    try:
        config = load_rules(file)
    except RulesError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"spanwatch check: {file} is invalid ({len(exc.errors)} error"
              f"{'' if len(exc.errors) == 1 else 's'})", file=sys.stderr)
        if output_format == "json":
            print(json.dumps({"file": str(file), "is_valid": False, "errors": exc.errors}))
        return EXIT_USAGE
    tiers = {tier: sum(rule.tier == tier for rule in config.rules) for tier in (1, 2, 3)}
    if output_format == "json":
        print(json.dumps({"file": str(file), "is_valid": True, "errors": [],
                          "rules": len(config.rules), "rules_per_tier": tiers,
                          "receivers": sorted(config.receivers)}))
    else:
        print(f"{file}: ok, {len(config.rules)} rules (tier 1: {tiers[1]}, tier 2: "
              f"{tiers[2]}, tier 3: {tiers[3]}), receivers {', '.join(sorted(config.receivers))}")
    return EXIT_OK


def _instant(text: str | None, option: str, default: datetime) -> datetime:
    if text is None:
        return default
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not an ISO 8601 time; expected e.g. "
                         f"2026-03-01T18:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError(f"{option} {text!r} has no time zone; add Z for UTC")
    return value.astimezone(UTC)


def _silence(args: argparse.Namespace) -> int:
    from rules import silences  # noqa: PLC0415

    now = datetime.now(UTC)  # the CLI is an adapter: it reads the clock, rules/ never does
    try:
        if args.action == "add":
            silence = _new_silence(args, now)
            _warn_unknown_names(silence, args.rules)
            silences.add_silence(args.silences, silence, now=now)
            shown = [silence]
        elif args.action == "expire":
            shown = [silences.expire_silence(args.silences, args.id, now=now)]
        else:
            shown = [s for s in silences.load_silences(args.silences)
                     if args.all or s.state(now) != "expired"]
    except (ValueError, OSError) as exc:  # SilencesError is a ValueError
        print(f"spanwatch silence {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE if isinstance(exc, OSError) else EXIT_USAGE
    if args.format == "json":
        body = [s.model_dump(mode="json") | {"state": s.state(now)} for s in shown]
        print(json.dumps(body if args.action == "list" else body[0]))
        return EXIT_OK
    for s in shown:
        print(f"{s.id}  {s.state(now)}  {silences.iso(s.starts_at)} .. "
              f"{silences.iso(s.ends_at)}  {' '.join(str(m) for m in s.matchers)}  "
              f"by {s.created_by}: {s.comment}")
    return EXIT_OK


def _new_silence(args: argparse.Namespace, now: datetime) -> Silence:
    from detectors.params import parse_duration  # noqa: PLC0415
    from rules.silences import new_silence  # noqa: PLC0415

    if not args.author:
        raise ValueError("--author is required (or set SPANWATCH_SILENCE_AUTHOR or USER)")
    starts_at = _instant(args.starts_at, "--starts-at", now)
    if args.ends_at is not None:
        ends_at = _instant(args.ends_at, "--ends-at", now)
    else:
        try:
            ends_at = starts_at + parse_duration(args.duration)
        except ValueError as exc:
            raise ValueError(f"--duration: {exc}") from None
    return new_silence(args.matcher, starts_at=starts_at, ends_at=ends_at,
                       created_by=args.author, comment=args.comment)


def _warn_unknown_names(silence: Silence, rules_file: Path) -> None:
    """A silence whose matcher misspells a rule or label mutes nothing: say so (a warning, so
    silences can be added before the rule ships or without the rules file at hand)."""
    import difflib  # noqa: PLC0415

    from metrics.series import LABELS  # noqa: PLC0415
    from rules.config import ALERT_LABELS  # noqa: PLC0415
    from rules.load import RulesError, load_rules  # noqa: PLC0415

    try:
        config = load_rules(rules_file)
    except RulesError:
        return
    rules = [rule.name for rule in config.rules]
    labels = {*LABELS, *ALERT_LABELS, *(n for rule in config.rules for n in rule.labels)}
    for matcher in silence.matchers:
        if matcher.name == "rule" and matcher.op == "=" and matcher.value not in rules:
            close = difflib.get_close_matches(matcher.value, rules, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            print(f"spanwatch silence add: warning: {rules_file} has no rule "
                  f"{matcher.value!r}{hint}", file=sys.stderr)
        elif matcher.name not in labels:
            print(f"spanwatch silence add: warning: no alert carries the label "
                  f"{matcher.name!r}; expected one of {', '.join(sorted(labels))}",
                  file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from spanwatch.observability import configure_logging  # noqa: PLC0415
    from spanwatch.runner import run_forever  # noqa: PLC0415
    from spanwatch.settings import Settings  # noqa: PLC0415

    overrides: dict[str, object] = {}
    kafka: dict[str, object] = {}
    if args.bootstrap_servers:
        kafka["bootstrap_servers"] = args.bootstrap_servers
    if args.spans_topic:
        kafka["spans_topic"] = args.spans_topic
    if kafka:
        overrides["kafka"] = {**Settings().kafka.model_dump(), **kafka}
    if args.output_file:
        overrides["output_file"] = args.output_file
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_format, settings.log_level)
    return run_forever(settings, workers=args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
