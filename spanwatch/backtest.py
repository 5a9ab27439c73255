"""`spanwatch backtest`: the live dataflow over recorded spans, in event time, printing every
alert transition. Nothing is sent; the rules, windows, detectors and lifecycle are the same
code `spanwatch run` uses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bytewax.testing import run_main

from flows.pipeline import FlowSinks
from ingest.decode import SourceMessage
from ingest.recorded import read_messages
from rules.config import RulesConfig
from rules.records import AlertEvent
from spanwatch.flow_runtime import Collected, discard, recorded_flow
from spanwatch.settings import Settings

RECORDED_TOPIC = "recorded"


def transition_json(event: AlertEvent) -> dict[str, Any]:
    """One alert transition as `--format json` prints it."""
    evaluation = event.evaluation
    return {
        "time": datetime.fromtimestamp(event.at_unix_ns / 1e9, tz=UTC).isoformat(),
        "rule": event.rule, "tier": event.tier, "state": event.state,
        "previous": event.previous, "labels": dict(event.labels), "value": evaluation.value,
        "threshold": evaluation.threshold, "baseline": evaluation.baseline,
        "samples": evaluation.samples, "fingerprint": event.fingerprint,
        "suppressed_by": list(event.suppressed_by), "detail": evaluation.detail,
    }


def transition_text(event: AlertEvent) -> str:
    doc = transition_json(event)
    labels = ",".join(f"{k}={v}" for k, v in doc["labels"].items())
    value = "-" if doc["value"] is None else f"{doc['value']:.4g}"
    bound = doc["threshold"] if doc["threshold"] is not None else doc["baseline"]
    against = "" if bound is None else (
        f" {'threshold' if doc['threshold'] is not None else 'baseline'} {bound:.4g}")
    muted = " suppressed" if doc["suppressed_by"] else ""
    return (f"{doc['time']}  tier={doc['tier']}  {doc['state']:<8} {doc['rule']}  [{labels}]  "
            f"value={value}{against}{muted}")


def _messages(files: Sequence[Path], progress: TextIO | None) -> Iterator[SourceMessage]:
    count = 0
    for path in files:
        for message in read_messages(path, signal_topic=RECORDED_TOPIC):
            count += 1
            if progress is not None and count % 1000 == 0:
                progress.write(f"\rbacktest: read {count} messages from {path.name}")
                progress.flush()
            yield SourceMessage(topic=RECORDED_TOPIC, partition=0, offset=count,
                                key=message.key, value=message.value)
    if progress is not None and count >= 1000:
        progress.write(f"\rbacktest: read {count} messages, evaluating...\n")


def backtest(files: Sequence[Path], rules: RulesConfig, settings: Settings) -> list[AlertEvent]:
    """Every alert transition the rules produce over the recorded files, in event time."""
    progress = sys.stderr if sys.stderr.isatty() else None
    messages = list(_messages(files, progress))
    collected = Collected()
    sinks = FlowSinks(groups=discard(), events=collected.sink("events"),
                      dead_letters=discard())
    run_main(recorded_flow(settings, rules, messages, sinks))  # type: ignore[no-untyped-call]
    return sorted(collected.events, key=lambda e: (e.at_unix_ns, e.rule, e.fingerprint))


def print_transitions(events: Sequence[AlertEvent], output_format: str, out: TextIO) -> None:
    for event in events:
        if output_format == "json":
            out.write(json.dumps(transition_json(event)) + "\n")
        else:
            out.write(transition_text(event) + "\n")
