"""`spanwatch demo`: the real flow over an embedded broker with generated traffic, end to end.

Starts the embedded Kafka-compatible broker, publishes `minutes` of realistic GenAI traffic
(with an injected rate-limit incident and a few malformed messages), runs the same dataflow as
`spanwatch run` until the topic is read to the end, then prints and writes what it found.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytewax.testing import run_main
from confluent_kafka import Consumer, Producer, TopicPartition

from flows.pipeline import FlowOptions, FlowSinks, build_flow, partition_key
from flows.sinks import CallbackSink
from ingest.assembly import Record
from ingest.export import record_to_json
from metrics.bucket import MINUTE_NS
from notify.config import NotifySettings
from notify.runtime import NotifyRuntime
from rules.config import ConsoleReceiver, FileReceiver, RulesConfig
from rules.load import load_rules
from rules.records import AlertEvent
from spanwatch.delivery import GroupNotifier
from spanwatch.demo_traffic import DemoTraffic, generate
from spanwatch.embedded_broker import EMBEDDED_CLIENT_TUNING, EmbeddedBroker
from spanwatch.flow_runtime import Collected
from spanwatch.report import IngestReport
from spanwatch.settings import KafkaSettings, Settings

SPANS_TOPIC = "otlp_spans"
PARTITIONS = 2
DLQ_TOPIC = "spanwatch_dlq"
MIN_REQUESTS_PER_MINUTE = 20
ERROR_RATE_LIMIT = 0.05


@dataclass(frozen=True, slots=True)
class DemoResult:
    traffic: DemoTraffic
    report: IngestReport
    dead_letters: list[dict[str, str]]
    events: list[AlertEvent]
    notifications: int
    seconds: float


def demo_rules(rules_file: Path, out_dir: Path) -> RulesConfig:
    """The shipped rules, with every tier sent to the console and a local file instead of
    PagerDuty / Slack (the demo needs no accounts or secrets)."""
    rules = load_rules(rules_file)
    receivers = {"console": ConsoleReceiver(kind="console"),
                 "file": FileReceiver(kind="file", path=str(out_dir / "notifications.jsonl"))}
    tiers = {tier: config.model_copy(update={"receivers": ("console", "file")})
             for tier, config in rules.tiers.items()}
    return rules.model_copy(update={"receivers": receivers, "tiers": tiers})


def run_demo(out_dir: Path, minutes: int = 45, output_format: str = "text",
             rules_file: Path = Path("alerts.toml")) -> int:
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / "records.jsonl"
    # Event time ends at the start of this minute, so the timestamps look like live traffic
    # and the minutes (hence the alerts) are the same whatever second the demo starts at:
    # started in the second half of a minute, the incident's resolve fell past the traffic.
    now_ns = time.time_ns() // MINUTE_NS * MINUTE_NS
    traffic = generate(start_unix_ns=now_ns - minutes * 60 * 1_000_000_000, minutes=minutes,
                       requests_per_minute=120)
    print(f"spanwatch demo: starting the embedded broker and publishing {traffic.spans} spans "
          f"in {len(traffic.messages)} messages ...", file=sys.stderr)
    report = IngestReport()
    rules = demo_rules(rules_file, out_dir)
    (out_dir / "notifications.jsonl").unlink(missing_ok=True)
    state_dir = out_dir / "state"
    shutil.rmtree(state_dir, ignore_errors=True)
    notify_settings = NotifySettings(outbox_path=state_dir / "outbox.sqlite3",
                                     digest_path=state_dir / "digest.sqlite3",
                                     digest_dir=out_dir / "digests")
    runtime = NotifyRuntime.build(rules.receivers, notify_settings)
    notifier = GroupNotifier(runtime, rules)
    collected = Collected()
    with EmbeddedBroker() as broker, records_path.open("w", encoding="utf-8") as records_file:
        broker.create_topics([SPANS_TOPIC, DLQ_TOPIC], partitions=PARTITIONS)
        _publish(broker.bootstrap, traffic)

        def write(records: list[Record]) -> None:
            report.add(records)
            for record in records:
                records_file.write(json.dumps(record_to_json(record)) + "\n")

        settings = Settings(kafka=KafkaSettings(
            bootstrap_servers=broker.bootstrap, spans_topic=SPANS_TOPIC,
            dead_letter_topic=DLQ_TOPIC, start_from="beginning",
            fetch_wait_max_ms=int(EMBEDDED_CLIENT_TUNING["fetch.wait.max.ms"])))
        sinks = FlowSinks(groups=CallbackSink(notifier.write), events=collected.sink("events"),
                          records=CallbackSink(write))
        options = FlowOptions(partitions=tuple(partition_key(SPANS_TOPIC, p)
                                               for p in range(PARTITIONS)), tail=False)
        runtime.start()
        try:
            run_main(build_flow(settings, rules, sinks, options))  # type: ignore[no-untyped-call]
            _wait_delivered(runtime, deadline_s=20)
        finally:
            runtime.stop()
        dead_letters = _read_dead_letters(broker.bootstrap)
    result = DemoResult(traffic, report, dead_letters, collected.events, notifier.sent,
                        time.monotonic() - started)
    findings = _findings(result)
    (out_dir / "findings.json").write_text(json.dumps(findings, indent=2) + "\n")
    if output_format == "json":
        print(json.dumps(findings))
    else:
        print(_render(findings))
        print(f"\nwritten: {out_dir / 'findings.json'} and {records_path}")
    return 0


def _wait_delivered(runtime: NotifyRuntime, deadline_s: float) -> None:
    """Until the outbox is empty (the console and file receivers answer at once)."""
    deadline = time.monotonic() + deadline_s
    while runtime.outbox.pending_count() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a local SQLite file; bounded by the deadline


def _publish(bootstrap: str, traffic: DemoTraffic) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in traffic.messages:
        producer.produce(SPANS_TOPIC, key=key, value=value)
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} demo messages were not delivered to the broker")


def _read_dead_letters(bootstrap: str) -> list[dict[str, str]]:
    """The dead-letter topic read to its end (assign + partition EOF; no consumer group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "spanwatch-demo",
                         "enable.partition.eof": True, "enable.auto.commit": False,
                         **EMBEDDED_CLIENT_TUNING})
    partitions = consumer.list_topics(DLQ_TOPIC, timeout=10).topics[DLQ_TOPIC].partitions
    consumer.assign([TopicPartition(DLQ_TOPIC, p, 0) for p in partitions])
    letters: list[dict[str, str]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 20
    while len(at_end) < len(partitions) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            at_end.add(message.partition() or 0)
            continue
        raw_headers = message.headers() or []
        pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in pairs}
        letters.append({"reason": headers.get("spanwatch.error", "?"),
                        "source": f"{headers.get('spanwatch.source.topic')}/"
                                  f"{headers.get('spanwatch.source.partition')}@"
                                  f"{headers.get('spanwatch.source.offset')}"})
    consumer.close()
    return letters


def _findings(result: DemoResult) -> dict[str, Any]:
    report = result.report
    series = []
    for (service, model, version), totals in sorted(report.series.items()):
        series.append({
            "service": service, "model": model, "prompt_template_version": version,
            "requests": totals.requests, "errors": totals.errors,
            "error_rate": round(totals.errors / totals.requests, 4) if totals.requests else 0,
            "errors_by_kind": dict(totals.errors_by_kind),
            "cost_usd": round(totals.cost_usd, 4), "unknown_cost_spans": totals.unknown_cost,
            "mean_ttft_s": round(totals.ttft_sum_s / totals.ttft_count, 3)
            if totals.ttft_count else None,
        })
    minutes = report.error_minutes(MIN_REQUESTS_PER_MINUTE, ERROR_RATE_LIMIT)
    incident = result.traffic.incident
    return {
        "spans_published": result.traffic.spans,
        "malformed_published": result.traffic.malformed,
        "records": report.records,
        "kinds": dict(report.kinds),
        "evaluations": report.evals,
        "dead_letters": result.dead_letters,
        "series": series,
        "error_minutes": [{
            "minute": datetime.fromtimestamp(m.minute_unix_ns / 1e9, tz=UTC).isoformat(),
            "service": m.series[0], "model": m.series[1], "prompt_template_version": m.series[2],
            "requests": m.requests, "errors": m.errors, "error_rate": round(m.error_rate, 3),
        } for m in minutes],
        "alerts": [{
            "time": datetime.fromtimestamp(e.at_unix_ns / 1e9, tz=UTC).isoformat(),
            "rule": e.rule, "tier": e.tier, "state": e.state, "previous": e.previous,
            "labels": dict(e.labels),
            "value": e.evaluation.value, "threshold": e.evaluation.threshold,
            "baseline": e.evaluation.baseline,
            "exemplar_trace_ids": list(e.evaluation.exemplar_trace_ids),
            "suppressed_by": list(e.suppressed_by),
        } for e in result.events],
        "notifications": result.notifications,
        "injected_incident": {"service": incident.service, "model": incident.model,
                              "minutes": [incident.start_minute, incident.end_minute],
                              "error_share": incident.error_share},
        "seconds": round(result.seconds, 1),
    }


def _render(findings: dict[str, Any]) -> str:
    lines = [
        f"spanwatch demo: {findings['records']} records from {findings['spans_published']} "
        f"published spans in {findings['seconds']} s "
        f"({', '.join(f'{k}={v}' for k, v in sorted(findings['kinds'].items()))}, "
        f"evaluations={findings['evaluations']})",
        "",
        f"{'service':18} {'model':20} {'prompt':11} {'requests':>8} {'errors':>6} "
        f"{'cost $':>8} {'ttft s':>6}",
    ]
    for s in findings["series"]:
        ttft = "-" if s["mean_ttft_s"] is None else f"{s['mean_ttft_s']:.2f}"
        lines.append(f"{s['service']:18} {s['model']:20} {s['prompt_template_version']:11} "
                     f"{s['requests']:>8} {s['errors']:>6} {s['cost_usd']:>8.2f} {ttft:>6}")
    lines += ["", f"minutes with error rate > {ERROR_RATE_LIMIT:.0%} "
                  f"(at least {MIN_REQUESTS_PER_MINUTE} requests):"]
    for m in findings["error_minutes"]:
        lines.append(f"  {m['minute']}  {m['service']} / {m['model']} / "
                     f"{m['prompt_template_version']}: {m['errors']}/{m['requests']} "
                     f"= {m['error_rate']:.0%}")
    if not findings["error_minutes"]:
        lines.append("  none")
    lines += ["", "alert transitions (event time, from the rules in alerts.toml):"]
    for a in findings["alerts"]:
        labels = ", ".join(f"{k}={v}" for k, v in a["labels"].items())
        value = "-" if a["value"] is None else f"{a['value']:.4g}"
        bound = a["threshold"] if a["threshold"] is not None else a["baseline"]
        bound_text = "" if bound is None else f" vs {bound:.4g}"
        muted = " (suppressed by a tier-1 alert)" if a["suppressed_by"] else (
            " (no longer suppressed)" if a["previous"] == a["state"] == "firing" else "")
        lines.append(f"  {a['time'][11:19]}  tier {a['tier']}  {a['state']:8} {a['rule']} "
                     f"[{labels}] value {value}{bound_text}{muted}")
    if not findings["alerts"]:
        lines.append("  none")
    lines.append(f"notifications sent to the console and notifications.jsonl: "
                 f"{findings['notifications']}")
    lines += ["", f"dead-lettered messages: {len(findings['dead_letters'])}"]
    lines += [f"  {d['source']}: {d['reason'][:110]}" for d in findings["dead_letters"]]
    return "\n".join(lines)
