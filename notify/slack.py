"""Slack receiver: a `Notification` in, one Slack message out (slack_sdk).

Two modes. Incoming webhook: every notification is a message in the webhook's channel. Bot
token: `chat.postMessage` to the configured channel; an alert's first message starts a thread
(channel and ts kept in the outbox) and its updates, repeats and resolve are replies in it; on
resolve the root message is also edited (`chat.update`) to show the alert resolved.
Rate limits: https://api.slack.com/docs/rate-limits (about one message per second per
channel; 429 with Retry-After). Webhook errors:
https://api.slack.com/messaging/webhooks#handling_errors
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from notify.blocks import SlackMessage, message_for, resolved_root_message
from notify.records import Delivered, Delivery, Failed, MessageRef, Notification, Retry
from notify.redaction import Redactor, redacting_logger
from notify.retry import StatusTable, header, parse_retry_after

DEFAULT_API_URL = "https://slack.com/api/"

# Web API: HTTP 200 with {"ok": false, "error": code}; 429 with Retry-After when rate limited;
# these codes are transient (https://api.slack.com/methods/chat.postMessage#errors), every
# other code (invalid_auth, channel_not_found, not_in_channel, invalid_blocks ...) is not.
WEB_STATUS = StatusTable(
    vendor="Slack", docs="https://api.slack.com/docs/rate-limits",
    retry_error_codes=frozenset({"ratelimited", "internal_error", "fatal_error",
                                 "service_unavailable", "request_timeout"}))
# Incoming webhooks answer 200 "ok", or 4xx with a plain-text code (invalid_payload,
# channel_not_found, channel_is_archived, invalid_token, no_service ...), 429 when rate limited.
WEBHOOK_STATUS = StatusTable(
    vendor="Slack webhook", docs="https://api.slack.com/messaging/webhooks#handling_errors")


class SlackNotifier:
    """Sends notifications to one Slack channel, through a webhook or a bot token."""

    def __init__(self, name: str, *, webhook_url: SecretStr | None = None,
                 bot_token: SecretStr | None = None, channel: str | None = None,
                 url: str | None = None, timeout_s: float = 10.0, ca_file: Path | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.name = name
        self.channel = channel
        self._clock = clock or (lambda: datetime.now(UTC))
        self._redact = Redactor([webhook_url, bot_token])
        logger = redacting_logger(f"notify.slack.client.{name}", self._redact)
        context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        # retry_handlers=[]: the sdk would retry connection errors itself; the outbox owns it.
        self._web: WebClient | None = None
        self._webhook: WebhookClient | None = None
        if bot_token is not None:
            if not channel:
                raise ValueError(f"receiver {name!r}: a bot token needs `channel` (an id like "
                                 "C0123456789 or a name like #llm-alerts)")
            base = (url or DEFAULT_API_URL).rstrip("/") + "/"
            self._web = WebClient(token=bot_token.get_secret_value(), base_url=base,
                                  timeout=int(timeout_s), ssl=context, logger=logger,
                                  retry_handlers=[])
        elif webhook_url is not None or url is not None:
            target = url or (webhook_url.get_secret_value() if webhook_url else "")
            self._webhook = WebhookClient(url=target, timeout=int(timeout_s), ssl=context,
                                          logger=logger, retry_handlers=[])
        else:
            raise ValueError(f"receiver {name!r}: set a webhook URL or a bot token in the "
                             "environment (see NotifySettings.secrets)")

    @property
    def is_threaded(self) -> bool:
        return self._web is not None

    def send(self, n: Notification) -> Delivery:
        message = message_for(n)
        if self._web is not None:
            return self._post(n, message)
        return self._post_webhook(message)

    def _note(self, message: SlackMessage) -> str:
        return f" (truncated: {'; '.join(message.truncated)})" if message.truncated else ""

    def _post_webhook(self, message: SlackMessage) -> Delivery:
        assert self._webhook is not None
        try:
            response = self._webhook.send(text=message.text, blocks=list(message.blocks),
                                          unfurl_links=False, unfurl_media=False)
        except OSError as exc:  # urllib's URLError, timeouts, refused connections
            return Retry(None, self._redact(f"connection error: {type(exc).__name__}: "
                                            f"{getattr(exc, 'reason', exc)}"))
        body = (response.body or "").strip()
        if response.status_code == 200:
            return Delivered(f"Slack webhook answered 200 {body or 'ok'}{self._note(message)}")
        return WEBHOOK_STATUS.outcome(
            response.status_code, self._redact(body or "(empty body)"),
            parse_retry_after(header(response.headers, "Retry-After"), self._clock()))

    def _post(self, n: Notification, message: SlackMessage) -> Delivery:
        assert self._web is not None and self.channel is not None
        kwargs: dict[str, Any] = {"channel": self.channel, "text": message.text,
                                  "blocks": list(message.blocks), "unfurl_links": False,
                                  "unfurl_media": False}
        is_reply = n.thread is not None and n.kind in ("update", "repeat", "resolve")
        if is_reply and n.thread is not None:
            kwargs["channel"] = n.thread.channel
            kwargs["thread_ts"] = n.thread.ts
        edited = ""
        if n.kind == "resolve" and n.thread is not None:
            # Edit the root first: an edit is idempotent, a reply is not, so a retry after a
            # failed reply repeats only the edit.
            outcome = self._edit_root(n, n.thread)
            if not isinstance(outcome, str):
                return outcome
            edited = outcome
        try:
            response = self._web.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            return self._api_error(exc)
        except OSError as exc:
            return Retry(None, self._redact(f"connection error: {type(exc).__name__}: "
                                            f"{getattr(exc, 'reason', exc)}"))
        channel, ts = str(response.get("channel", "")), str(response.get("ts", ""))
        # A root message of an alert becomes its thread; a digest or a reply does not.
        is_root = not is_reply and n.kind in ("trigger", "update", "repeat")
        root = MessageRef(channel, ts) if is_root and channel and ts else None
        where = f"in thread {n.thread.ts}" if is_reply and n.thread else "as a new message"
        return Delivered(f"Slack answered ok: posted {where}, channel={channel} ts={ts}"
                         f"{self._note(message)}{edited}", message=root)

    def _edit_root(self, n: Notification, thread: MessageRef) -> str | Delivery:
        """chat.update of the alert's root message to its resolved state. Returns a note for
        the delivery answer, or the `Retry` to return when Slack is unavailable. A permanent
        error (message deleted, edit not allowed) does not stop the resolve reply."""
        assert self._web is not None
        edit = resolved_root_message(n)
        try:
            self._web.chat_update(channel=thread.channel, ts=thread.ts, text=edit.text,
                                  blocks=list(edit.blocks))
        except SlackApiError as exc:
            outcome = self._api_error(exc)
            if isinstance(outcome, Retry):
                return Retry(outcome.after, f"editing the root message: {outcome.why}")
            why = outcome.why if isinstance(outcome, Failed) else "unexpected answer"
            return f"; root message not edited: {why}"
        except OSError as exc:
            return Retry(None, self._redact(f"connection error: {type(exc).__name__}: "
                                            f"{getattr(exc, 'reason', exc)}"))
        return f"; root message {thread.ts} edited to resolved{self._note(edit)}"

    def _api_error(self, exc: SlackApiError) -> Delivery:
        response = exc.response
        status = int(response.status_code)
        data = response.data if isinstance(response.data, dict) else {}
        code = str(data.get("error") or "unknown_error")
        retry_after = parse_retry_after(header(response.headers, "Retry-After"), self._clock())
        why = code
        details = data.get("errors") or data.get("response_metadata", {}).get("messages")
        if details:
            why += f" ({'; '.join(str(d) for d in details)[:500]})"
        why = self._redact(why)
        if status == 200:
            return WEB_STATUS.error_code_outcome(code, why, retry_after)
        return WEB_STATUS.outcome(status, why, retry_after)
