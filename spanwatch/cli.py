"""`spanwatch` command line: run | demo | inspect.

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
from pathlib import Path

from pydantic import ValidationError

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
    demo.add_argument("--minutes", type=int, default=30, help="minutes of traffic (default 30)")
    demo.add_argument("--format", choices=("text", "json"), default="text",
                      help="stdout format (default text)")

    inspect = commands.add_parser(
        "inspect", help="print the normalised spans of recorded OTLP files, one JSON per line",
        description="Read OpenTelemetry Collector file-exporter recordings (OTLP JSON lines, or "
                    "OTLP protobuf with a 4-byte big-endian length before each message) and "
                    "print what spanwatch understands of each span. Content is stripped.")
    inspect.add_argument("files", nargs="+", type=Path, metavar="FILE")
    return parser


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

            return run_demo(out_dir=args.out, minutes=args.minutes, output_format=args.format)
        if args.command == "run":
            return _run(args)
    except ValidationError as exc:
        print(f"spanwatch: configuration error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
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


def _run(args: argparse.Namespace) -> int:
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
    return run_forever(settings, workers=args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
