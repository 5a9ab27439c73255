"""Silences: matching by labels, rule and time; the file (atomic, validated); and the
`spanwatch silence add | list | expire` round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules.silences import (
    Silence,
    SilencesError,
    add_silence,
    expire_silence,
    load_silences,
    lookup,
    matching,
    new_silence,
)
from spanwatch.cli import main

AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CHECKOUT = {"service": "checkout", "model": "gpt-4o", "provider": "openai"}


def silence(*matchers: str, starts: timedelta = timedelta(0),
            length: timedelta = timedelta(hours=2)) -> Silence:
    return new_silence(list(matchers), starts_at=AT + starts, ends_at=AT + starts + length,
                       created_by="ana", comment="deploying a fix")


def test_matches_labels_and_rule() -> None:
    s = silence("service=checkout", "rule=error-rate-high")
    assert s.matches("error-rate-high", CHECKOUT, AT)
    assert not s.matches("ttft-p99-high", CHECKOUT, AT)
    assert not s.matches("error-rate-high", {**CHECKOUT, "service": "search"}, AT)
    assert s.matches("error-rate-high", tuple(CHECKOUT.items()), AT)  # records.Labels too


def test_time_bounds_start_inclusive_end_exclusive() -> None:
    s = silence("service=checkout", starts=timedelta(minutes=10))
    assert s.state(AT) == "pending"
    assert not s.matches("r", CHECKOUT, AT)
    assert s.matches("r", CHECKOUT, AT + timedelta(minutes=10))
    assert s.matches("r", CHECKOUT, AT + timedelta(hours=2, minutes=9, seconds=59))
    assert not s.matches("r", CHECKOUT, AT + timedelta(hours=2, minutes=10))
    assert s.state(AT + timedelta(hours=3)) == "expired"


def test_regex_and_negative_matchers() -> None:
    s = silence("model=~gpt-4.*", "service!~search|billing", "rule!=safety-eval-failure")
    assert s.matches("error-rate-high", CHECKOUT, AT)
    assert s.matches("error-rate-high", {**CHECKOUT, "model": "gpt-4o-mini"}, AT)
    assert not s.matches("error-rate-high", {**CHECKOUT, "model": "o3-gpt-4"}, AT)  # anchored
    assert not s.matches("error-rate-high", {**CHECKOUT, "service": "billing"}, AT)
    assert not s.matches("safety-eval-failure", CHECKOUT, AT)


def test_matching_returns_the_ids_for_suppressed_by() -> None:
    a, b = silence("service=checkout"), silence("service=search")
    assert matching([a, b], "r", CHECKOUT, AT) == (a.id,)
    is_silenced = lookup([b, a])  # the callable rules.inhibition.Inhibitor takes
    assert is_silenced("r", tuple(CHECKOUT.items()), AT) == a.id
    assert is_silenced("r", (("service", "billing"),), AT) is None


@pytest.mark.parametrize(("matchers", "message"), [
    (["service"], '"service" is not a matcher; expected name=value, name!=value, '
                  'name=~regex or name!~regex'),
    (["model=~gpt-4("], 'regex "gpt-4(" does not compile: missing ), unterminated subpattern '
                        'at position 5'),
    (["service!=checkout", "model=~.*"],
     "every matcher also matches alerts without that label, so the silence would mute "
     "everything; add one like service=checkout"),
])
def test_bad_silences_are_refused(matchers: list[str], message: str) -> None:
    with pytest.raises(SilencesError) as caught:
        silence(*matchers)
    assert str(caught.value) == message


def test_end_must_follow_start() -> None:
    with pytest.raises(SilencesError, match="ends_at 2026-03-02T11:00:00Z is not after "
                                            "starts_at 2026-03-02T12:00:00Z"):
        silence("service=checkout", length=-timedelta(hours=1))


def test_file_round_trip_expire_and_retention(tmp_path: Path) -> None:
    path = tmp_path / "silences.json"
    assert load_silences(path) == ()
    old = silence("service=old", starts=-timedelta(days=10))
    kept = silence("service=checkout")
    add_silence(path, old, now=AT - timedelta(days=9))
    add_silence(path, kept, now=AT)  # drops `old`, ended more than 7 days ago
    assert load_silences(path) == (kept,)
    ended = expire_silence(path, kept.id[:6], now=AT + timedelta(minutes=5))
    assert ended.ends_at == AT + timedelta(minutes=5)
    assert load_silences(path) == (ended,)
    with pytest.raises(SilencesError, match="already ended"):
        expire_silence(path, kept.id, now=AT + timedelta(minutes=6))
    with pytest.raises(SilencesError, match="matches no silence"):
        expire_silence(path, "nope", now=AT)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [
        "silences.json"]  # no temporary file left behind


def test_a_corrupt_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "silences.json"
    path.write_text('{"version": 1,\n "silences": [}\n', encoding="utf-8")
    with pytest.raises(SilencesError, match=r"silences.json:2: invalid JSON"):
        load_silences(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["silence", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "silences.json")
    rules = str(Path(__file__).resolve().parents[2] / "alerts.toml")
    code, out, err = run(capsys, "add", "--silences", path, "--rules", rules,
                         "--matcher", "service=checkout", "--matcher", "rule=error-rate-high",
                         "--duration", "2h", "--author", "ana", "--comment", "deploy",
                         "--format", "json")
    assert (code, err) == (0, "")
    added = json.loads(out)
    assert added["matchers"] == ["service=checkout", "rule=error-rate-high"]
    assert added["state"] == "active" and added["created_by"] == "ana"
    starts = datetime.fromisoformat(added["starts_at"])
    assert datetime.fromisoformat(added["ends_at"]) - starts == timedelta(hours=2)

    code, out, _ = run(capsys, "list", "--silences", path)
    assert code == 0
    assert out.startswith(f"{added['id']}  active  ")
    assert out.rstrip().endswith("service=checkout rule=error-rate-high  by ana: deploy")

    code, out, _ = run(capsys, "expire", "--silences", path, added["id"])
    assert code == 0 and out.startswith(f"{added['id']}  expired  ")
    assert run(capsys, "list", "--silences", path)[1] == ""
    code, out, _ = run(capsys, "list", "--silences", path, "--all", "--format", "json")
    assert [s["state"] for s in json.loads(out)] == ["expired"]


def test_cli_warns_about_unknown_rules_and_labels(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = str(Path(__file__).resolve().parents[2] / "alerts.toml")
    code, _, err = run(capsys, "add", "--silences", str(tmp_path / "s.json"), "--rules", rules,
                       "--matcher", "rule=error-rate-hihg", "--matcher", "servce=checkout",
                       "--author", "ana", "--comment", "test")
    assert code == 0
    lines = err.splitlines()
    assert lines[0] == (f"spanwatch silence add: warning: {rules} has no rule "
                        f"'error-rate-hihg'; did you mean error-rate-high?")
    assert lines[1].startswith("spanwatch silence add: warning: no alert carries the label "
                               "'servce'; expected one of ")


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "s.json")
    code, out, err = run(capsys, "add", "--silences", path, "--matcher", "service",
                         "--author", "ana", "--comment", "x")
    assert (code, out) == (2, "")
    assert err == ('spanwatch silence add: "service" is not a matcher; expected name=value, '
                   'name!=value, name=~regex or name!~regex\n')
    code, _, err = run(capsys, "add", "--silences", path, "--matcher", "service=a",
                       "--author", "ana", "--comment", "x", "--ends-at", "2026-03-02 18:00")
    assert code == 2
    assert err == ("spanwatch silence add: --ends-at '2026-03-02 18:00' has no time zone; "
                   "add Z for UTC\n")
    code, _, err = run(capsys, "expire", "--silences", path, "abc")
    assert code == 2
    assert "id 'abc' matches no silence" in err
