"""Assembles the notify stage from configuration: notifiers, outbox, workers, digests.

In: the receivers of alerts.toml and `NotifySettings`. Out: a `NotifyRuntime` whose `submit`
(or `notify_events`) the alert lifecycle calls; it returns at once, delivery happens in one
worker thread per receiver, digests in one scheduler thread per digest receiver.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ingest.pricing import PriceTable
from notify.attribution import CostAttribution
from notify.config import PAGERDUTY_KEY_ENV, SLACK_WEBHOOK_ENV, NotifySettings, env_secret
from notify.console import ConsoleNotifier, FileNotifier
from notify.digest import DigestNotifier, DigestScheduler
from notify.digest_store import DigestStore
from notify.outbox import Outbox
from notify.pagerduty import PagerDutyNotifier
from notify.records import Notification, NotificationKind, Notifier
from notify.render import build_notification
from notify.retry import RetryPolicy
from notify.slack import SlackNotifier
from notify.worker import Clock, DeliveryService, DeliveryWorker, SystemClock, TokenBucket
from rules.records import AlertEvent


class MissingSecretError(ValueError):
    """A receiver whose secret is not set; names the environment variables to set."""


class ReceiverLike(Protocol):
    """A receiver's configuration: `notify.config`'s models or `rules.config`'s (read by
    `kind`; options a model lacks take their defaults)."""

    @property
    def kind(self) -> str: ...


# Rate budgets when the receiver sets none: PagerDuty about 120 events per minute per routing
# key (https://developer.pagerduty.com/docs/events-api-v2/overview), Slack about one message
# per second per channel (https://api.slack.com/docs/rate-limits).
DEFAULT_BUDGETS: dict[str, tuple[float, int]] = {
    "pagerduty": (2.0, 10), "slack": (1.0, 2), "digest": (100.0, 100),
    "console": (100.0, 100), "file": (100.0, 100)}


def _env_name(receiver: str, secret: str) -> str:
    return f"SPANWATCH_NOTIFY__SECRETS__{receiver.upper().replace('-', '_')}__{secret.upper()}"


def _option(config: ReceiverLike, name: str, default: Any = None) -> Any:
    value = getattr(config, name, None)
    return default if value is None else value


def budget_of(config: ReceiverLike) -> TokenBucket:
    rate, burst = DEFAULT_BUDGETS.get(config.kind, (1.0, 1))
    return TokenBucket(float(_option(config, "rate_per_s", rate)),
                       int(_option(config, "burst", burst)))


def build_notifier(name: str, config: ReceiverLike, settings: NotifySettings, *,
                   digest_store: DigestStore | None = None,
                   wall_clock: Callable[[], datetime] | None = None) -> Notifier:
    """The notifier of one receiver, with its secrets (see `notify.config` for where from)."""
    secrets = settings.secrets_for(name)
    url = _option(config, "url")
    if config.kind == "pagerduty":
        key_env = getattr(config, "routing_key_env", PAGERDUTY_KEY_ENV)
        routing_key = secrets.routing_key or env_secret(key_env)
        if routing_key is None:
            raise MissingSecretError(
                f"receiver {name!r} (pagerduty): set {_env_name(name, 'routing_key')}"
                + (f" or {key_env}" if key_env else ""))
        return PagerDutyNotifier(name, routing_key, url=url,
                                 source=_option(config, "source", "spanwatch"),
                                 severity_by_tier=_option(config, "severity"),
                                 timeout_s=settings.http_timeout_s, ca_file=settings.ca_file,
                                 clock=wall_clock)
    if config.kind == "slack":
        token_env = _option(config, "token_env")
        webhook_env = _option(config, "webhook_url_env", None if token_env else SLACK_WEBHOOK_ENV)
        token = secrets.bot_token or env_secret(token_env)
        webhook = secrets.webhook_url or (None if token else env_secret(webhook_env))
        if token is None and webhook is None and url is None:
            named = " or ".join(v for v in (token_env, webhook_env) if v)
            raise MissingSecretError(
                f"receiver {name!r} (slack): set {_env_name(name, 'bot_token')} (with channel) "
                f"or {_env_name(name, 'webhook_url')}" + (f" or {named}" if named else ""))
        return SlackNotifier(name, webhook_url=webhook, bot_token=token,
                             channel=_option(config, "channel"), url=url,
                             timeout_s=settings.http_timeout_s, ca_file=settings.ca_file,
                             clock=wall_clock)
    if config.kind == "digest":
        return DigestNotifier(name, digest_store or DigestStore(settings.digest_path),
                              clock=wall_clock)
    if config.kind == "console":
        is_stdout = _option(config, "stream", "stderr") == "stdout"
        return ConsoleNotifier(name, None if is_stdout else sys.stderr)
    if config.kind == "file":
        return FileNotifier(name, Path(_option(config, "path")), _option(config, "format", "json"))
    raise ValueError(f"receiver {name!r}: unknown kind {config.kind!r}")


def digest_scheduler(name: str, config: ReceiverLike, store: DigestStore,
                     settings: NotifySettings, *, submit: Callable[[Notification], bool] | None,
                     clock: Clock) -> DigestScheduler:
    """The scheduler of a digest receiver."""
    return DigestScheduler(
        name, store, send_at=_option(config, "send_at", time(9, 0)),
        timezone=ZoneInfo(_option(config, "timezone", "UTC")), submit=submit,
        deliver_to=_option(config, "deliver_to"), markdown_dir=settings.digest_dir, clock=clock)


@dataclass
class NotifyRuntime:
    """The running notify stage of one process."""

    settings: NotifySettings
    receivers: Mapping[str, ReceiverLike]
    outbox: Outbox
    digest_store: DigestStore
    service: DeliveryService
    schedulers: dict[str, DigestScheduler] = field(default_factory=dict)
    prices: PriceTable | None = None
    """Relative prices of input, cached and output tokens, for cost attributions."""

    @classmethod
    def build(cls, receivers: Mapping[str, ReceiverLike], settings: NotifySettings, *,
              clock: Clock | None = None, prices: PriceTable | None = None) -> NotifyRuntime:
        """`prices`: the price table ingest uses (the shipped one when not given)."""
        clock = clock or SystemClock()
        outbox = Outbox(settings.outbox_path)
        store = DigestStore(settings.digest_path)
        policy = RetryPolicy(initial=settings.backoff_initial, maximum=settings.backoff_max,
                             deadline=settings.delivery_deadline)
        workers = {
            name: DeliveryWorker(
                build_notifier(name, config, settings, digest_store=store, wall_clock=clock.now),
                outbox, policy=policy, budget=budget_of(config), clock=clock,
                lease=policy_lease(settings))
            for name, config in receivers.items()}
        service = DeliveryService(outbox, workers, clock, retention=settings.outbox_retention)
        schedulers = {
            name: digest_scheduler(name, config, store, settings, submit=service.submit,
                                   clock=clock)
            for name, config in receivers.items() if config.kind == "digest"}
        return cls(settings, receivers, outbox, store, service, schedulers,
                   prices or PriceTable.load())

    def submit(self, n: Notification) -> bool:
        """Enqueue one notification (returns at once; False if already enqueued)."""
        return self.service.submit(n)

    def notify_events(self, events: Sequence[AlertEvent], *, receivers: Sequence[str],
                      kind: NotificationKind, metric: str = "", runbook: str = "",
                      attribution: CostAttribution | None = None, key: str | None = None
                      ) -> list[Notification]:
        """Render one notification per receiver for a group of same-rule events, enqueue them,
        and count triggers for the digest. The caller has decided that they must be sent."""
        if kind == "trigger":
            for event in events:
                self.digest_store.record_alert(event)
        submitted = []
        for receiver in receivers:
            n = build_notification(events, receiver=receiver, kind=kind, metric=metric,
                                   runbook=runbook,
                                   trace_url_template=self.settings.trace_url_template,
                                   attribution=attribution, key=key, prices=self.prices)
            self.submit(n)
            submitted.append(n)
        return submitted

    def start(self) -> None:
        self.service.start()
        for scheduler in self.schedulers.values():
            scheduler.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        for scheduler in self.schedulers.values():
            scheduler.stop(timeout_s)
        self.service.stop(timeout_s)
        self.outbox.close()
        self.digest_store.close()


def policy_lease(settings: NotifySettings) -> timedelta:
    """How long a claimed row waits before another attempt may take it: longer than one
    HTTP request can take, so only a crashed attempt is ever taken over."""
    return timedelta(seconds=settings.http_timeout_s * 3 + 5)
