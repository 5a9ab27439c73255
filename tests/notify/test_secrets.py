"""The shared secrets test: for every receiver, through successes and failures, no secret value
appears in logs, delivery answers, outbox rows, payloads, files or command output."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from notify.commands import test_receiver as receiver_test  # not collected as a test
from notify.config import NotifySettings, parse_receivers
from notify.records import Delivery
from notify.runtime import NotifyRuntime, build_notifier
from tests.fakes.pagerduty_server import FakePagerDuty, Scripted
from tests.fakes.slack_server import FakeSlack
from tests.fakes.slack_server import Scripted as SlackAnswer
from tests.notify.conftest import BOT_TOKEN, ROUTING_KEY, WEBHOOK_SECRET, FakeClock, make_event


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPANWATCH_", env_nested_delimiter="__",
                                      extra="ignore")
    notify: NotifySettings = Field(default_factory=NotifySettings)


def slack_echoes(secret: str, *, webhook: bool = False) -> list[SlackAnswer]:
    """Failures whose bodies quote the secret, as a misbehaving gateway might."""
    if webhook:
        return [SlackAnswer(400, f"invalid_payload for {secret}"),
                SlackAnswer(429, f"rate_limited {secret}", {"Retry-After": "1"}),
                SlackAnswer(500, f"upstream {secret} failed")]
    return [SlackAnswer(200, {"ok": False, "error": "invalid_arguments",
                              "errors": [f"token {secret} rejected"]}),
            SlackAnswer(429, {"ok": False, "error": "ratelimited", "detail": secret},
                        {"Retry-After": "1"}),
            SlackAnswer(502, f"<html>bad gateway for {secret}</html>"),
            SlackAnswer(200, {"ok": True, "channel": "C0LLMALERTS", "ts": "1.000100"}),
            # the resolve's edit of that root message (chat.update), refused
            SlackAnswer(200, {"ok": False, "error": "cant_update_message",
                              "errors": [f"not yours: {secret}"]})]


def pagerduty_echoes(secret: str) -> list[Scripted]:
    return [Scripted(400, {"status": "invalid event", "message": "Event object is invalid",
                           "errors": [f"'routing_key' {secret} is invalid"]}),
            Scripted(429, {"status": "throttle event", "message": f"slow down {secret}"},
                     {"Retry-After": "1"}),
            Scripted(500, f"internal error for {secret}")]


CASES = {
    "pagerduty": {"kind": "pagerduty"},
    "slack-bot": {"kind": "slack", "channel": "#llm-alerts"},
    "slack-webhook": {"kind": "slack"},
    "slack-token-env": {"kind": "slack", "channel": "#llm-alerts",
                        "token_env": "MY_SLACK_BOT_TOKEN"},
    "digest": {"kind": "digest", "send_at": "09:00", "timezone": "Europe/Berlin"},
    "console": {"kind": "console"},
    "file": {"kind": "file"},
}

VENDORS = ("pagerduty", "slack-bot", "slack-webhook", "slack-token-env")


@pytest.mark.parametrize("name", list(CASES))
def test_no_secret_leaks_from_any_receiver(
        name: str, *, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
        pagerduty: FakePagerDuty, slack: FakeSlack) -> None:
    webhook_url = slack.webhook_url
    secrets = [ROUTING_KEY, BOT_TOKEN, webhook_url, WEBHOOK_SECRET]
    env = "SPANWATCH_NOTIFY__SECRETS__"
    for receiver in CASES:  # every receiver's secrets are set, whichever is under test
        key = receiver.upper().replace("-", "_")
        monkeypatch.setenv(f"{env}{key}__ROUTING_KEY", ROUTING_KEY)
        monkeypatch.setenv(f"{env}{key}__WEBHOOK_URL", webhook_url)
    monkeypatch.setenv(f"{env}SLACK_BOT__BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("MY_SLACK_BOT_TOKEN", BOT_TOKEN)  # named by the slack-token-env receiver
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPANWATCH_NOTIFY__OUTBOX_PATH", str(tmp_path / "outbox.sqlite3"))
    monkeypatch.setenv("SPANWATCH_NOTIFY__DIGEST_PATH", str(tmp_path / "digest.sqlite3"))
    monkeypatch.setenv("SPANWATCH_NOTIFY__DIGEST_DIR", str(tmp_path / "digests"))
    settings = AppSettings().notify
    config: dict[str, Any] = dict(CASES[name])
    if name == "pagerduty":
        config["url"] = pagerduty.url
        pagerduty.script(*pagerduty_echoes(ROUTING_KEY))
    elif name in ("slack-bot", "slack-token-env"):
        config["url"] = slack.api_url
        slack.script(*slack_echoes(BOT_TOKEN))
    elif name == "slack-webhook":
        slack.script(*slack_echoes(webhook_url, webhook=True))
    elif name == "file":
        config["path"] = str(tmp_path / "alerts.jsonl")
    rules = tmp_path / "alerts.toml"
    rules.write_text("".join(f'[receivers."{name}"]\n' + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in config.items())))
    receivers = parse_receivers({name: config}, str(rules))
    caplog.set_level(logging.DEBUG)

    clock = FakeClock()
    runtime = NotifyRuntime.build(receivers, settings, clock=clock)
    answers: list[Delivery] = []
    try:
        for state, previous, kind, at_s in (("firing", "pending", "trigger", 0),
                                            ("firing", "firing", "update", 60),
                                            ("resolved", "firing", "resolve", 120)):
            event = make_event(state=state, previous=previous, at_s=at_s)  # type: ignore[arg-type]
            runtime.notify_events([event], receivers=[name], kind=kind,  # type: ignore[arg-type]
                                  metric="error_rate", runbook="Roll back.")
        runtime.service.workers[name].drain(timeout_s=600)
        rows = runtime.outbox.rows()
        assert {r.status for r in rows} <= {"delivered", "failed"}
        if name in VENDORS:
            assert [r.status for r in rows] == ["failed", "delivered", "delivered"]
            if name.startswith("slack-") and name != "slack-webhook":  # the edit was tried
                assert "root message not edited: Slack error cant_update_message" in str(
                    rows[2].answer)
            notifier = build_notifier(name, receivers[name], settings)
            pagerduty.down()
            slack.down()
            answers.append(notifier.send(rows[0].notification))  # connection refused
            pagerduty.up()
            slack.up()
    finally:
        runtime.stop()
    out, err = io.StringIO(), io.StringIO()
    receiver_test(name, rules, settings, out=out, err=err, clock=clock)

    seen = [caplog.text, out.getvalue(), err.getvalue(), *capsys.readouterr(),
            *(repr(a) for a in answers)]
    seen += [f"{r.last_error} {r.answer} {r.notification}" for r in rows]
    seen += [json.dumps({k: v for k, v in r.json().items() if k != "routing_key"})
             for r in pagerduty.requests]  # the routing key belongs in that one field only
    seen += [r.body.decode() for r in slack.requests]  # token in a header, webhook in the path
    seen += [p.read_text() for p in tmp_path.rglob("*") if p.is_file()
             and p.suffix in (".jsonl", ".md")]
    leaks = [(secret, text[:200]) for secret in secrets for text in seen if secret in text]
    assert leaks == []
    if name in VENDORS:
        assert "[redacted]" in caplog.text or any("[redacted]" in s for s in seen)
