"""`spanwatch demo` runs the real flow on the embedded broker and finds the injected incident."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanwatch.cli import main


def test_demo_finds_the_injected_incident_and_dead_letters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--minutes", "12", "--format", "json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert findings == json.loads((tmp_path / "findings.json").read_text())
    incident = findings["injected_incident"]
    flagged = {(m["service"], m["model"]) for m in findings["error_minutes"]}
    assert flagged == {(incident["service"], incident["model"])}
    assert findings["malformed_published"] > 0
    assert len(findings["dead_letters"]) == findings["malformed_published"]
    assert findings["records"] == findings["spans_published"]
    records = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(records) == findings["records"]
