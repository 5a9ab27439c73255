"""Loading and hot reload: TOML positions for messages, and a watcher that applies a valid
edit, keeps the old rules on a broken one (logging every error) and applies the fix."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules.load import RulesError, RulesWatcher, TomlPositions, parse_rules
from tests.fakes.rules_toml import CONSOLE_TIERS

VALID = CONSOLE_TIERS + """
[[rules]]
name = "error-rate-high"
tier = 1
metric = "error_rate"
when = "> 5%"
runbook = "Roll back."
"""
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_positions_of_tables_keys_and_array_elements() -> None:
    text = """\
# comment [not.a.table]
[receivers."my-slack"]
kind = "slack"

[[rules]]
name = "a"
runbook = \"\"\"
[[rules]]
name = "inside a string"
\"\"\"
group_by = [
  "service",   # a comment, with a comma
  "model",
]
detector = { kind = "ratio", factor = 2.0 }

[[rules]]
name = "b"
labels.team = "ml"
[rules.extra]
key = 1
"""
    positions = TomlPositions(text)
    assert positions.line_of(("receivers", "my-slack")) == 2
    assert positions.line_of(("receivers", "my-slack", "kind")) == 3
    assert positions.line_of(("rules", 0)) == 5
    assert positions.line_of(("rules", 0, "name")) == 6
    assert positions.line_of(("rules", 0, "group_by")) == 11
    assert positions.line_of(("rules", 0, "group_by", 1)) == 13
    assert positions.line_of(("rules", 0, "detector", "factor")) == 15
    assert positions.line_of(("rules", 1)) == 17
    assert positions.line_of(("rules", 1, "labels", "team")) == 19
    assert positions.line_of(("rules", 1, "extra", "key")) == 21
    assert positions.line_of(("rules", 1, "missing")) == 17
    assert positions.line_of(("nowhere",)) == 1


def test_a_syntax_error_reports_its_line() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(VALID + "[[rules]\n", "alerts.toml")
    assert caught.value.errors == [
        "alerts.toml:16: invalid TOML: Expected ']]' at the end of an array declaration "
        "(column 8)"]


def test_a_syntax_error_at_the_end_reports_the_last_line() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(VALID + "group_by = [\n", "alerts.toml")
    assert caught.value.errors == ["alerts.toml:16: invalid TOML: Invalid value"]


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_reload_applies_a_valid_change(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    write(path, VALID)
    watcher = RulesWatcher(path)
    assert watcher.poll(START) is None  # unchanged
    write(path, VALID.replace('when = "> 5%"', 'when = "> 2%"'))
    assert watcher.poll(START + timedelta(seconds=1)) is None  # within the interval
    applied = watcher.poll(START + timedelta(seconds=5))
    assert applied is not None and applied is watcher.current
    assert applied.rules[0].when is not None and applied.rules[0].when.threshold == 0.02


def test_reload_keeps_the_old_rules_on_a_broken_file_and_logs_every_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alerts.toml"
    write(path, VALID)
    watcher = RulesWatcher(path, interval=timedelta(0))
    old = watcher.current
    broken = VALID.replace('metric = "error_rate"', 'metric = "eror_rate"').replace(
        'when = "> 5%"', 'when = "> 5 %%"')
    write(path, broken)
    with caplog.at_level(logging.ERROR, logger="spanwatch.rules"):
        assert watcher.poll(START) is None
    assert watcher.current is old
    assert [r.getMessage() for r in caplog.records] == [
        f'rules reload rejected file={path} error={path}:13: rules[0] "error-rate-high": '
        f'metric "eror_rate" is unknown; did you mean error_rate?',
        f'rules reload rejected file={path} error={path}:14: rules[0] "error-rate-high": '
        f'when "> 5 %%" is not a condition; expected an operator (>, >=, <, <=) and a number, '
        f'e.g. "> 0.05", "> 5%", "> 60s"',
        f"rules reload kept the previous rules file={path} kept_rules=1 errors=2 "
        f"digest={caplog.records[-1].args[-1]}",  # type: ignore[index]
    ]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="spanwatch.rules"):
        assert watcher.poll(START + timedelta(seconds=1)) is None
    assert caplog.records == []  # the same broken file is reported once

    write(path, VALID.replace('when = "> 5%"', 'when = "> 3%"'))
    fixed = watcher.poll(START + timedelta(seconds=2))
    assert fixed is not None and watcher.current is fixed
    assert fixed.rules[0].when is not None and fixed.rules[0].when.threshold == 0.03


def test_reload_survives_a_missing_file(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alerts.toml"
    write(path, VALID)
    watcher = RulesWatcher(path, interval=timedelta(0))
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="spanwatch.rules"):
        assert watcher.poll(START) is None
        assert watcher.poll(START + timedelta(seconds=1)) is None
    assert len(caplog.records) == 1
    assert "No such file or directory" in caplog.records[0].getMessage()
    write(path, VALID)
    assert watcher.poll(START + timedelta(seconds=2)) is None  # same content as applied
    assert len(watcher.current.rules) == 1


def test_startup_with_a_broken_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    write(path, VALID.replace("tier = 1", "tier = 5"))
    with pytest.raises(RulesError) as caught:
        RulesWatcher(path)
    assert caught.value.errors == [
        f'{path}:12: rules[0] "error-rate-high": tier is 5; expected 1, 2 or 3']
