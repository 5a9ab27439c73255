"""`spanwatch backtest` replays recordings through the live flow and prints the transitions."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from ingest.recorded import write_proto_messages
from spanwatch.cli import main
from spanwatch.demo_traffic import generate

START_NS = 1_764_201_600_000_000_000  # 2025-11-27T00:00:00Z


def test_backtest_prints_the_incident_page_and_its_resolve(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traffic = generate(START_NS, minutes=40, requests_per_minute=120)
    recording = tmp_path / "spans.pb"
    write_proto_messages(recording, [value for key, value in traffic.messages if key != b"bad"])

    assert main(["backtest", str(recording), "--format", "json"]) == 0

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"time", "rule", "tier", "state", "labels", "value"} <= set(lines[0])
    pages = [(t["rule"], t["state"]) for t in lines if t["rule"] == "error-rate-high"
             and t["labels"]["model"] == traffic.incident.model and not t["suppressed_by"]]
    assert pages[0] == ("error-rate-high", "firing")
    assert pages[-1] == ("error-rate-high", "resolved")
    first = next(t for t in lines if t["rule"] == "error-rate-high")
    onset_s = (START_NS / 1e9) + traffic.incident.start_minute * 60
    fired_s = datetime.fromisoformat(first["time"]).timestamp()
    # The page comes after the incident starts and within the rule's for: + window.
    assert onset_s < fired_s <= onset_s + 12 * 60
    assert first["tier"] == 1 and first["value"] > 0.05


def test_backtest_of_a_broken_rules_file_exits_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text("[receivers.x]\nkind = \"console\"\n[tiers.1]\nreceivers = [\"y\"]\n")
    recording = tmp_path / "spans.jsonl"
    recording.write_text("")
    assert main(["backtest", str(recording), "--rules", str(rules)]) == 2
    assert "receivers" in capsys.readouterr().err
