"""Receivers from alerts.toml, secrets from the environment or .env (nested as `notify`)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from notify.config import (
    ConsoleReceiver,
    DigestReceiver,
    NotifySettings,
    PagerDutyReceiver,
    ReceiverConfigError,
    SlackReceiver,
    env_secret,
    load_receivers,
)

REPO = Path(__file__).resolve().parents[2]


class AppSettings(BaseSettings):
    """How spanwatch's Settings nests NotifySettings (the lead adds `notify` to it)."""

    model_config = SettingsConfigDict(env_prefix="SPANWATCH_", env_nested_delimiter="__",
                                      env_file=".env", extra="ignore")
    notify: NotifySettings = Field(default_factory=NotifySettings)


def test_the_shipped_alerts_toml_receivers_load() -> None:
    receivers = load_receivers(REPO / "alerts.toml")
    assert isinstance(receivers["pagerduty"], PagerDutyReceiver)
    slack = receivers["slack"]
    assert isinstance(slack, SlackReceiver) and slack.channel == "#llm-alerts"
    digest = receivers["digest"]
    assert isinstance(digest, DigestReceiver)
    assert (digest.send_at, digest.timezone, digest.deliver_to) == (
        time(9, 0), "Europe/Berlin", "slack")


def test_receiver_defaults_follow_the_vendor_rate_limits(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('[receivers.pd]\nkind = "pagerduty"\n[receivers.s]\nkind = "slack"\n'
                    '[receivers.c]\nkind = "console"\n')
    receivers = load_receivers(path)
    assert (receivers["pd"].rate_per_s, receivers["pd"].burst) == (2.0, 10)  # 120 / min
    assert receivers["s"].rate_per_s == 1.0  # about one message per second per channel
    assert isinstance(receivers["c"], ConsoleReceiver)


def test_every_receiver_error_is_reported_with_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[receivers.a]\nkind = "pagerdutty"\n'
        '[receivers.b]\nkind = "slack"\nchanel = "#x"\n'
        '[receivers.c]\nkind = "digest"\ntimezone = "Europe/Berlinn"\n'
        '[receivers.d]\nkind = "digest"\ndeliver_to = "nowhere"\n')
    with pytest.raises(ReceiverConfigError) as caught:
        load_receivers(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 4
    assert lines[0] == (f"{path}: receivers.\"a\".kind = 'pagerdutty': unknown receiver "
                        "kind; expected pagerduty, slack, digest, console, file")
    assert lines[1] == (f"{path}: receivers.\"b\".chanel = '#x': Extra inputs are not "
                        "permitted")
    assert lines[2] == (f"{path}: receivers.\"c\".timezone = 'Europe/Berlinn': Value error, "
                        "unknown time zone 'Europe/Berlinn'; expected an IANA name such as "
                        "Europe/Berlin or UTC")
    assert lines[3] == (f"{path}: receivers.\"d\".deliver_to = 'nowhere': expected a slack, "
                        "console or file receiver; defined: ['a', 'b', 'c', 'd']")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ReceiverConfigError, match="cannot read"):
        load_receivers(tmp_path / "missing.toml")


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANWATCH_NOTIFY__SECRETS__PAGERDUTY__ROUTING_KEY", "rk-SEKRIT-1234")
    monkeypatch.setenv("SPANWATCH_NOTIFY__SECRETS__SLACK_ONCALL__BOT_TOKEN", "xoxb-SEKRIT-5678")
    monkeypatch.setenv("SPANWATCH_NOTIFY__TRACE_URL_TEMPLATE",
                       "http://jaeger:16686/trace/{trace_id}")
    settings = AppSettings().notify
    routing_key = settings.secrets_for("pagerduty").routing_key
    assert routing_key is not None and routing_key.get_secret_value() == "rk-SEKRIT-1234"
    token = settings.secrets_for("slack-oncall").bot_token  # "-" in a name becomes "_"
    assert token is not None and token.get_secret_value() == "xoxb-SEKRIT-5678"
    assert settings.secrets_for("unknown").routing_key is None
    assert "SEKRIT" not in repr(settings)
    assert "SEKRIT" not in str(settings.model_dump())


def test_secrets_come_from_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    (tmp_path / ".env").write_text(
        "SPANWATCH_NOTIFY__SECRETS__SLACK__WEBHOOK_URL=https://hooks.slack.com/services/T/B/x\n")
    monkeypatch.chdir(tmp_path)
    webhook = AppSettings().notify.secrets_for("slack").webhook_url
    assert webhook is not None
    assert webhook.get_secret_value() == "https://hooks.slack.com/services/T/B/x"


def test_a_named_variable_is_read_from_the_environment_or_dotenv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("MY_ROUTING_KEY=from-dotenv-1234\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MY_ROUTING_KEY", raising=False)
    found = env_secret("MY_ROUTING_KEY")
    assert found is not None and found.get_secret_value() == "from-dotenv-1234"
    monkeypatch.setenv("MY_ROUTING_KEY", "from-env-5678")  # the environment wins
    found = env_secret("MY_ROUTING_KEY")
    assert found is not None and found.get_secret_value() == "from-env-5678"
    assert env_secret("NOT_SET_ANYWHERE") is None
    assert env_secret(None) is None


def test_rules_config_style_keys_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('[receivers.s]\nkind = "slack"\ntoken_env = "T"\nchannel = "#c"\n'
                    '[receivers.p]\nkind = "pagerduty"\nrouting_key_env = "K"\n'
                    'url = "https://gw"\n[receivers.c]\nkind = "console"\n')
    receivers = load_receivers(path)
    assert isinstance(receivers["s"], SlackReceiver) and receivers["s"].token_env == "T"
    assert isinstance(receivers["p"], PagerDutyReceiver)
    assert receivers["p"].routing_key_env == "K"
    assert isinstance(receivers["c"], ConsoleReceiver) and receivers["c"].stream == "stderr"


def test_a_bad_trace_url_template_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANWATCH_NOTIFY__TRACE_URL_TEMPLATE", "http://tempo/{traceId}")
    with pytest.raises(ValidationError, match=r"must contain \{trace_id\}"):
        AppSettings()
