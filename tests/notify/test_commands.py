"""`spanwatch test-receiver` and `spanwatch digest` logic against the fake vendors."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from notify.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, digest_command
from notify.commands import test_receiver as receiver_test  # not collected as a test
from notify.config import NotifySettings, ReceiverSecrets
from notify.digest_store import DigestStore, UsageSample
from tests.fakes.pagerduty_server import FakePagerDuty, Scripted
from tests.fakes.slack_server import FakeSlack, rate_limited
from tests.notify.conftest import BOT_TOKEN, ROUTING_KEY, FakeClock

NOW = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)  # 09:00 in Berlin


@pytest.fixture
def rules(tmp_path: Path, pagerduty: FakePagerDuty, slack: FakeSlack) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(f"""
[receivers.pagerduty]
kind = "pagerduty"
url = "{pagerduty.url}"
[receivers.slack]
kind = "slack"
channel = "#llm-alerts"
url = "{slack.api_url}"
[receivers.digest]
kind = "digest"
send_at = "09:00"
timezone = "Europe/Berlin"
deliver_to = "slack"
[receivers.quiet]
kind = "pagerduty"
""")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> NotifySettings:
    return NotifySettings(
        outbox_path=tmp_path / "state" / "outbox.sqlite3",
        digest_path=tmp_path / "state" / "digest.sqlite3", digest_dir=tmp_path / "digests",
        trace_url_template="http://jaeger:16686/trace/{trace_id}",
        secrets={"pagerduty": ReceiverSecrets(routing_key=SecretStr(ROUTING_KEY)),
                 "slack": ReceiverSecrets(bot_token=SecretStr(BOT_TOKEN))})


def run_test_receiver(name: str, rules: Path, settings: NotifySettings,
                      clock: FakeClock | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = receiver_test(name, rules, settings, out=out, err=err, clock=clock or FakeClock())
    return code, out.getvalue(), err.getvalue()


def test_pagerduty_gets_a_marked_trigger_then_its_resolve(
        rules: Path, settings: NotifySettings, pagerduty: FakePagerDuty) -> None:
    code, out, _ = run_test_receiver("pagerduty", rules, settings)
    assert code == EXIT_OK
    trigger, resolve = pagerduty.events()
    assert trigger["payload"]["summary"].startswith("[TEST FIRING] spanwatch-test-receiver")
    assert trigger["payload"]["severity"] == "info"  # tier 3: a test should not wake anyone
    assert trigger["payload"]["custom_details"]["test"] == (
        "sent by spanwatch test-receiver; not a real incident")
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
    assert out.splitlines() == [
        f"testing receiver 'pagerduty' (pagerduty), dedup_key {trigger['dedup_key']}",
        f"  trigger: delivered: PagerDuty accepted the trigger event, "
        f"dedup_key={trigger['dedup_key']}",
        f"  resolve: delivered: PagerDuty accepted the resolve event, "
        f"dedup_key={trigger['dedup_key']}"]


def test_slack_resolves_in_the_test_alerts_thread(rules: Path, settings: NotifySettings,
                                                  slack: FakeSlack) -> None:
    code, out, _ = run_test_receiver("slack", rules, settings)
    assert code == EXIT_OK
    root, reply = slack.messages
    assert reply.thread_ts == root.ts
    (posted,) = [r.json() for r in slack.requests if r.path == "/api/chat.postMessage"][:1]
    assert posted["blocks"][0]["text"]["text"].startswith(
        ":test_tube: :red_circle: [TEST FIRING]")
    # The root now reads resolved, and still shows the test trigger below.
    assert root.blocks[0]["text"]["text"].startswith(
        ":test_tube: :large_green_circle: [TEST RESOLVED]")
    assert root.blocks[2:] == posted["blocks"][1:]
    assert f"resolve: delivered: Slack answered ok: posted in thread {root.ts}" in out
    assert f"root message {root.ts} edited to resolved" in out


def test_a_rate_limited_test_waits_as_told_and_reports_it(
        rules: Path, settings: NotifySettings, slack: FakeSlack) -> None:
    clock = FakeClock(NOW)
    slack.script(rate_limited(4))
    code, out, _ = run_test_receiver("slack", rules, settings, clock)
    assert code == EXIT_OK
    assert "  trigger: attempt 1: Slack answered 429: ratelimited; retrying in 4.0 s" in out
    assert clock.now() - NOW >= timedelta(seconds=4)


def test_a_rejected_test_exits_1_quoting_the_vendor(
        rules: Path, settings: NotifySettings, pagerduty: FakePagerDuty) -> None:
    pagerduty.script(Scripted(400, {"status": "invalid event", "message": "Event object is "
                                    "invalid", "errors": ["'payload.source' is missing"]}))
    code, out, _ = run_test_receiver("pagerduty", rules, settings)
    assert code == EXIT_FAILURE
    assert ("  trigger: FAILED: PagerDuty answered 400: Event object is invalid: "
            "'payload.source' is missing") in out


def test_a_digest_receiver_is_tested_through_its_deliver_to(
        rules: Path, settings: NotifySettings, slack: FakeSlack) -> None:
    code, out, _ = run_test_receiver("digest", rules, settings)
    assert code == EXIT_OK
    assert out.startswith("digest is a digest receiver; testing its deliver_to 'slack'")
    assert len(slack.messages) == 2


def test_usage_errors_exit_2_with_the_fix(rules: Path, settings: NotifySettings,
                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                          ) -> None:
    monkeypatch.delenv("SPANWATCH_PAGERDUTY_ROUTING_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    code, _, err = run_test_receiver("nope", rules, settings)
    assert (code, err) == (EXIT_USAGE, f"{rules}: no receiver 'nope'; defined: ['digest', "
                                       "'pagerduty', 'quiet', 'slack']\n")
    code, _, err = run_test_receiver("quiet", rules, settings)
    assert (code, err) == (EXIT_USAGE, "receiver 'quiet' (pagerduty): set "
                                       "SPANWATCH_NOTIFY__SECRETS__QUIET__ROUTING_KEY or "
                                       "SPANWATCH_PAGERDUTY_ROUTING_KEY\n")


def test_a_secret_in_the_variable_the_receiver_names_is_used(
        tmp_path: Path, slack: FakeSlack, pagerduty: FakePagerDuty,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules.config style: `token_env` / `routing_key_env` name the variable."""
    path = tmp_path / "alerts.toml"
    path.write_text(f"""
[receivers.oncall]
kind = "slack"
channel = "#llm-alerts"
token_env = "MY_SLACK_BOT_TOKEN"
url = "{slack.api_url}"
[receivers.pd]
kind = "pagerduty"
url = "{pagerduty.url}"
[receivers.hook]
kind = "slack"
""")
    monkeypatch.setenv("MY_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SPANWATCH_SLACK_WEBHOOK_URL", slack.webhook_url)  # the default name
    monkeypatch.setenv("SPANWATCH_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)  # the default name
    assert run_test_receiver("oncall", path, NotifySettings())[0] == EXIT_OK
    assert run_test_receiver("pd", path, NotifySettings())[0] == EXIT_OK
    assert run_test_receiver("hook", path, NotifySettings())[0] == EXIT_OK
    assert [m.channel for m in slack.messages] == ["C0LLMALERTS"] * 2 + ["webhook"] * 2
    assert len(pagerduty.events(accepted_only=True)) == 2


def test_digest_preview_prints_the_markdown_without_marking_it_sent(
        rules: Path, settings: NotifySettings) -> None:
    store = DigestStore(settings.digest_path)
    store.record_usage(UsageSample(NOW - timedelta(hours=1), "gpt-4o", "v1", 40, 2, 1.25))
    out = io.StringIO()
    assert digest_command(settings, rules, out=out, clock=FakeClock(NOW)) == EXIT_OK
    assert out.getvalue().startswith("# spanwatch digest 2024-05-06 (Europe/Berlin)\n\n40 "
                                     "requests, error rate 5.00%, cost $1.25")
    assert not store.is_sent("digest", date(2024, 5, 6))


def test_digest_send_delivers_now_and_writes_the_markdown(
        rules: Path, settings: NotifySettings, slack: FakeSlack) -> None:
    out = io.StringIO()
    assert digest_command(settings, rules, send=True, out=out, clock=FakeClock(NOW)) == EXIT_OK
    assert (settings.digest_dir / "digest-2024-05-06.md").exists()
    (message,) = slack.messages
    assert message.blocks[0]["text"]["text"] == ":newspaper: spanwatch digest 2024-05-06"
    assert "  delivered to slack: Slack answered ok: posted as a new message" in out.getvalue()


def test_digest_send_to_a_receiver_that_is_down_exits_1_and_stays_pending(
        rules: Path, settings: NotifySettings, slack: FakeSlack) -> None:
    slack.down()
    out = io.StringIO()
    code = digest_command(settings, rules, send=True, out=out, clock=FakeClock(NOW),
                          deliver_timeout_s=5)
    assert code == EXIT_FAILURE
    assert ("  still pending (a running spanwatch will retry it) at slack: connection error: "
            "URLError: [Errno 111] Connection refused") in out.getvalue()
