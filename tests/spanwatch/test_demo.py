"""`spanwatch demo` runs the real flow on the embedded broker and finds the injected incident."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanwatch.cli import main


def test_demo_finds_the_injected_incident_and_dead_letters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--minutes", "40", "--format", "json"]) == 0
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
    # The shipped error-rate rule pages for the incident's series and resolves after it.
    transitions = [(a["rule"], a["state"], a["labels"].get("model")) for a in findings["alerts"]
                   if not a["suppressed_by"] and a["rule"] == "error-rate-high"]
    assert transitions[0] == ("error-rate-high", "firing", incident["model"])
    assert transitions[-1] == ("error-rate-high", "resolved", incident["model"])
    assert findings["notifications"] >= 2
    sent = (tmp_path / "notifications.jsonl").read_text().splitlines()
    assert len(sent) >= 2
