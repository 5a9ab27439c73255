"""CLI commands that operate on rules and receivers: backtest, test-receiver, digest."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _rules_default() -> Path:
    return Path(os.environ.get("SPANWATCH_RULES_FILE", "alerts.toml"))


def add_commands(commands: Any) -> None:
    backtest = commands.add_parser(
        "backtest", help="run the rules over recorded spans and print every alert transition",
        description="Replay OTel Collector file-exporter recordings (OTLP JSON lines, or OTLP "
                    "protobuf with a 4-byte big-endian length per message) through the same "
                    "flow as `spanwatch run`, in event time. Nothing is sent.")
    backtest.add_argument("spans", nargs="+", type=Path, metavar="SPANS")
    backtest.add_argument("--rules", type=Path, default=_rules_default(),
                          help="rules file [env SPANWATCH_RULES_FILE, default alerts.toml]")
    backtest.add_argument("--format", choices=("text", "json"), default="text",
                          help="text, or one JSON object per transition (default text)")

    test = commands.add_parser(
        "test-receiver", help="send a marked test alert (trigger, then resolve) to a receiver",
        description="Like a 'test contact point' button: sends a clearly marked test alert "
                    "through one receiver of the rules file and reports what the API answered.")
    test.add_argument("name", metavar="NAME", help="receiver name in alerts.toml")
    test.add_argument("--rules", type=Path, default=_rules_default(),
                      help="rules file [env SPANWATCH_RULES_FILE, default alerts.toml]")

    digest = commands.add_parser(
        "digest", help="preview or send the daily digest now",
        description="Render today's digest (tier-3 alerts and the usage summary).")
    mode = digest.add_mutually_exclusive_group(required=True)
    mode.add_argument("--preview", action="store_true", help="print it (Markdown)")
    mode.add_argument("--send", action="store_true", help="send it now")
    digest.add_argument("--receiver", help="digest receiver (default: every one)")
    digest.add_argument("--rules", type=Path, default=_rules_default(),
                        help="rules file [env SPANWATCH_RULES_FILE, default alerts.toml]")


def run_command(args: argparse.Namespace) -> int | None:
    """Run one of this module's commands; None when `args` names another command."""
    if args.command == "backtest":
        return _backtest(args)
    if args.command == "test-receiver":
        from notify.commands import test_receiver as send_test  # noqa: PLC0415
        from spanwatch.settings import Settings  # noqa: PLC0415

        return send_test(args.name, args.rules, Settings().notify)
    if args.command == "digest":
        from notify.commands import digest_command  # noqa: PLC0415
        from spanwatch.settings import Settings  # noqa: PLC0415

        return digest_command(Settings().notify, args.rules, receiver=args.receiver,
                              send=bool(args.send))
    return None


def _backtest(args: argparse.Namespace) -> int:
    from ingest.recorded import RecordingError  # noqa: PLC0415
    from rules.load import RulesError, load_rules  # noqa: PLC0415
    from spanwatch.backtest import backtest, print_transitions  # noqa: PLC0415
    from spanwatch.settings import Settings  # noqa: PLC0415

    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        for message in exc.errors:
            print(message, file=sys.stderr)
        return EXIT_USAGE
    try:
        events = backtest(args.spans, rules, Settings())
    except (OSError, RecordingError) as exc:
        print(f"spanwatch backtest: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print_transitions(events, args.format, sys.stdout)
    return EXIT_OK
