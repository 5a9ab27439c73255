"""Configuration of the notify stage: receivers (from `alerts.toml`) and runtime settings.

Receivers are the `[receivers.NAME]` tables of alerts.toml (no secrets there). A receiver's
secret is found, first match wins:

1. in `NotifySettings.secrets[NAME]` (pydantic-settings, `SecretStr`), with `NotifySettings`
   nested as `notify`: `SPANWATCH_NOTIFY__SECRETS__PAGERDUTY__ROUTING_KEY`,
   `SPANWATCH_NOTIFY__SECRETS__SLACK__BOT_TOKEN`, `SPANWATCH_NOTIFY__SECRETS__SLACK__WEBHOOK_URL`;
2. in the variable the receiver names (`routing_key_env`, default
   `SPANWATCH_PAGERDUTY_ROUTING_KEY`; `token_env`; `webhook_url_env`, default
   `SPANWATCH_SLACK_WEBHOOK_URL` when no token is named), in the environment or `.env`.

The receiver models here accept the keys of `rules.config`'s receiver models too (same
`kind`s, `url`, `*_env`), and `build_notifier` reads either family by `kind`.
"""

from __future__ import annotations

import os
import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values  # python-dotenv, which pydantic-settings depends on
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from notify.render import validate_trace_url_template

Severity = Literal["critical", "error", "warning", "info"]
PAGERDUTY_KEY_ENV = "SPANWATCH_PAGERDUTY_ROUTING_KEY"
SLACK_WEBHOOK_ENV = "SPANWATCH_SLACK_WEBHOOK_URL"


class _Receiver(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, description="API endpoint override (gateways, "
                            "proxies, tests); console, file and digest have none to override.")
    rate_per_s: float = Field(default=1.0, gt=0, description="Sustained messages per second.")
    burst: int = Field(default=1, ge=1, description="Messages allowed at once after a lull.")


def _default_severity() -> dict[int, Severity]:
    return {1: "critical", 2: "warning", 3: "info"}


class PagerDutyReceiver(_Receiver):
    """Events API v2; the routing key comes from the environment (`routing_key`)."""

    kind: Literal["pagerduty"]
    # url: the Events API base (default https://events.pagerduty.com); https, or http on a
    # loopback address.
    routing_key_env: str | None = Field(default=PAGERDUTY_KEY_ENV,
                                        description="Variable holding the routing key.")
    source: str = Field(default="spanwatch",
                        description="payload.source when the alert has no service label.")
    severity: dict[int, Severity] = Field(
        default_factory=_default_severity,
        description="PagerDuty severity per tier.")
    # About 120 events per minute per routing key:
    # https://developer.pagerduty.com/docs/events-api-v2/overview (rate limits)
    rate_per_s: float = Field(default=2.0, gt=0)
    burst: int = Field(default=10, ge=1)


class SlackReceiver(_Receiver):
    """A webhook URL or a bot token (with `channel`) comes from the environment."""

    kind: Literal["slack"]
    channel: str | None = Field(default=None, description="Channel for the bot token mode.")
    # url: the Web API base (bot token), or the webhook URL itself (a gateway adding the secret).
    webhook_url_env: str | None = Field(default=None,
                                        description="Variable holding the webhook URL.")
    token_env: str | None = Field(default=None, description="Variable holding the bot token.")
    # About one message per second per channel: https://api.slack.com/docs/rate-limits
    rate_per_s: float = Field(default=1.0, gt=0)
    burst: int = Field(default=2, ge=1)


class DigestReceiver(_Receiver):
    """Keeps tier-3 alerts; sends the daily digest at `send_at` through `deliver_to`."""

    kind: Literal["digest"]
    send_at: time = Field(default=time(9, 0), description="Local wall time, e.g. \"09:00\".")
    timezone: str = Field(default="UTC", description="IANA zone, e.g. Europe/Berlin.")
    deliver_to: str | None = Field(default=None,
                                   description="Receiver that gets the digest (slack, ...).")
    rate_per_s: float = Field(default=100.0, gt=0)
    burst: int = Field(default=100, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; expected an IANA name such as "
                             "Europe/Berlin or UTC") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ConsoleReceiver(_Receiver):
    kind: Literal["console"]
    stream: Literal["stdout", "stderr"] = "stderr"
    rate_per_s: float = Field(default=100.0, gt=0)
    burst: int = Field(default=100, ge=1)


class FileReceiver(_Receiver):
    kind: Literal["file"]
    path: Path
    format: Literal["json", "text"] = "json"
    rate_per_s: float = Field(default=100.0, gt=0)
    burst: int = Field(default=100, ge=1)


ReceiverConfig = Annotated[
    PagerDutyReceiver | SlackReceiver | DigestReceiver | ConsoleReceiver | FileReceiver,
    Field(discriminator="kind")]
_RECEIVER: TypeAdapter[ReceiverConfig] = TypeAdapter(ReceiverConfig)


class ReceiverSecrets(BaseModel):
    """Secrets of one receiver; never logged, never in errors, alerts or digests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    routing_key: SecretStr | None = None
    webhook_url: SecretStr | None = None
    bot_token: SecretStr | None = None


class NotifySettings(BaseModel):
    """Runtime settings of notification (nest as `notify` in spanwatch's Settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outbox_path: Path = Field(default=Path("spanwatch-state/outbox.sqlite3"),
                              description="The durable outbox (SQLite).")
    digest_path: Path = Field(default=Path("spanwatch-state/digest.sqlite3"),
                              description="Digest store (SQLite).")
    digest_dir: Path = Field(default=Path("spanwatch-digests"),
                             description="Where digests are written as Markdown.")
    trace_url_template: str | None = Field(
        default=None, description="Link for exemplar traces, e.g. "
                                  "http://jaeger:16686/trace/{trace_id}.")
    delivery_deadline: timedelta = Field(default=timedelta(hours=6), gt=timedelta(0),
                                         description="Give up retrying after this long.")
    backoff_initial: timedelta = Field(default=timedelta(seconds=1), gt=timedelta(0))
    backoff_max: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    http_timeout_s: float = Field(default=10.0, gt=0)
    outbox_retention: timedelta = Field(
        default=timedelta(days=7), ge=timedelta(hours=1),
        description="Delivered and failed outbox rows older than this are deleted (hourly). "
                    "Keep it longer than any replay after a restart: a purged notification "
                    "that is replayed goes out again.")
    ca_file: Path | None = Field(default=None, description="Extra CA bundle (TLS gateways).")
    secrets: dict[str, ReceiverSecrets] = Field(
        default_factory=dict, description="Per receiver name (case-insensitive, - as _).")

    @field_validator("trace_url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else validate_trace_url_template(value)

    def secrets_for(self, receiver: str) -> ReceiverSecrets:
        wanted = receiver.lower().replace("-", "_")
        for name, secrets in self.secrets.items():
            if name.lower().replace("-", "_") == wanted:
                return secrets
        return ReceiverSecrets()


def env_secret(variable: str | None, env_file: Path = Path(".env")) -> SecretStr | None:
    """The secret in environment variable `variable`, else in that key of the .env file."""
    if not variable:
        return None
    value = os.environ.get(variable)
    if value is None and env_file.is_file():
        value = dotenv_values(env_file).get(variable)
    return SecretStr(value) if value else None


class ReceiverConfigError(ValueError):
    """alerts.toml receivers that cannot be used; the message lists every problem."""


def parse_receivers(table: object, source: str) -> dict[str, ReceiverConfig]:
    """Validate the `[receivers]` table of `source` (shape, then references); report all."""
    if not isinstance(table, dict):
        raise ReceiverConfigError(f"{source}: receivers must be a table of [receivers.NAME]")
    receivers: dict[str, ReceiverConfig] = {}
    errors: list[str] = []
    for name, body in table.items():
        try:
            receivers[name] = _RECEIVER.validate_python(body)
        except ValidationError as exc:
            for err in exc.errors():
                if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                    kind = body.get("kind") if isinstance(body, dict) else None
                    expected = str(err.get("ctx", {}).get("expected_tags", "")).replace("'", "")
                    errors.append(f'{source}: receivers."{name}".kind = {kind!r}: unknown '
                                  f"receiver kind; expected {expected}")
                    continue
                where = ".".join(str(p) for p in err["loc"][1:] if p) or "kind"
                errors.append(f'{source}: receivers."{name}".{where} = '
                              f"{err.get('input')!r}: {err['msg']}")
    for name, receiver in receivers.items():
        if not isinstance(receiver, DigestReceiver) or receiver.deliver_to is None:
            continue
        target = receivers.get(receiver.deliver_to)
        is_unknown = receiver.deliver_to not in table
        if is_unknown or isinstance(target, DigestReceiver):  # (an invalid one is reported)
            errors.append(f'{source}: receivers."{name}".deliver_to = '
                          f"{receiver.deliver_to!r}: expected a slack, console or file "
                          f"receiver; defined: {sorted(table)}")
    if errors:
        raise ReceiverConfigError("\n".join(errors))
    return receivers


def load_receivers(path: Path) -> dict[str, ReceiverConfig]:
    """The receivers defined in an alerts.toml file."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReceiverConfigError(f"{path}: cannot read: {exc}") from None
    return parse_receivers(doc.get("receivers", {}), str(path))
