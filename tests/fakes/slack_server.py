"""A local Slack server (real HTTP on 127.0.0.1): Web API chat.postMessage and chat.update, and
incoming webhooks.

Web API (https://api.slack.com/methods/chat.postMessage): POST /api/chat.postMessage with a
bearer token -> HTTP 200 {"ok": true, "channel": "C...", "ts": "...", "message": {...}}, or
HTTP 200 {"ok": false, "error": "invalid_auth" | "not_authed" | "channel_not_found" |
"invalid_blocks" | "no_text" | "invalid_arguments"}; 429 {"ok": false, "error":
"ratelimited"} with Retry-After when scripted. chat.update
(https://api.slack.com/methods/chat.update): the channel id (not a name) and ts of a message
the bot posted -> HTTP 200 {"ok": true, "channel", "ts", "text", "message"}, the message
replaced; else {"ok": false, "error": "channel_not_found" | "message_not_found" | "no_text" |
"invalid_blocks"} (scripted answers cover cant_update_message, edit_window_closed ...). Webhooks
(https://api.slack.com/messaging/webhooks#handling_errors): POST /services/T.../B.../SECRET ->
200 "ok", or 400 "invalid_payload" / "no_text" / "invalid_blocks", 404 "no_service".
Block Kit limits are checked as Slack does: 50 blocks, 3000 characters of section text,
150 of header text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.http_fake import HttpFake, RecordedRequest, Scripted

__all__ = ["WEBHOOK_PATH", "FakeSlack", "PostedMessage", "RecordedRequest", "Scripted",
           "api_error", "rate_limited"]

WEBHOOK_PATH = "/services/T00000000/B00000000/"


def rate_limited(retry_after_s: int, *, webhook: bool = False) -> Scripted:
    """Slack's 429: Retry-After in seconds (https://api.slack.com/docs/rate-limits)."""
    body: dict[str, Any] | str = "rate_limited" if webhook else {"ok": False,
                                                                 "error": "ratelimited"}
    return Scripted(429, body, {"Retry-After": str(retry_after_s)})


def api_error(code: str) -> Scripted:
    """A Web API failure: HTTP 200 with ok false, like Slack."""
    return Scripted(200, {"ok": False, "error": code})


@dataclass(frozen=True, slots=True)
class PostedMessage:
    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]]


def block_errors(blocks: object) -> list[str]:
    """Block Kit violations, worded like Slack's invalid_blocks details."""
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    errors = []
    if len(blocks) > 50:
        errors.append("must be less than 51 items [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        text = (block.get("text") or {}).get("text", "") if isinstance(block, dict) else ""
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section" and len(text) > 3000:
            errors.append(f"must be less than 3001 characters [json-pointer:/blocks/{i}/text/text]")
        if kind == "header" and len(text) > 150:
            errors.append(f"must be less than 151 characters [json-pointer:/blocks/{i}/text/text]")
    return errors


class FakeSlack(HttpFake):
    """Slack on 127.0.0.1: `api_url` for the Web API, `webhook_url` for the incoming webhook."""

    json_content_type = "application/json; charset=utf-8"
    text_content_type = "text/plain; charset=utf-8"

    def __init__(self, *, bot_token: str, webhook_secret: str,
                 channels: dict[str, str] | None = None) -> None:
        super().__init__("slack")
        self.bot_token = bot_token
        self.webhook_secret = webhook_secret
        self.channels = channels or {"#llm-alerts": "C0LLMALERTS"}
        """Channel name -> id; posting by name or id both work."""
        self.messages: list[PostedMessage] = []
        """Every message as it now reads (edits replace it in place)."""
        self.edits: list[PostedMessage] = []
        """Each successful chat.update, as the edited message read afterwards."""
        self._ts = 1_715_000_000_000_100

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}{self.webhook_secret}"

    def _answer(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> Scripted:
        if path.startswith("/api/"):
            return self._scripted() or self._web_api(path.removeprefix("/api/"), headers, body)
        if path.startswith(WEBHOOK_PATH):
            scripted = self._scripted()
            if scripted is not None:
                return scripted
            if path != WEBHOOK_PATH + self.webhook_secret:
                return Scripted(404, "no_service")
            return self._webhook(body)
        return Scripted(404, "not found")

    def _args(self, headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
        try:
            if headers.get("content-type", "").startswith("application/json"):
                parsed = json.loads(body or b"{}")
                return parsed if isinstance(parsed, dict) else None
            return dict(parse_qsl(body.decode()))
        except ValueError:
            return None

    def _web_api(self, method: str, headers: dict[str, str], body: bytes) -> Scripted:
        auth = headers.get("authorization", "")
        if not auth:
            return api_error("not_authed")
        if auth != f"Bearer {self.bot_token}":
            return api_error("invalid_auth")
        args = self._args(headers, body)
        if args is None:
            return api_error("invalid_json")
        if method == "auth.test":
            return Scripted(200, {"ok": True, "user": "spanwatch", "team": "T00000000"})
        if method == "chat.update":
            return self._update(args)
        if method != "chat.postMessage":
            return api_error("unknown_method")
        channel = str(args.get("channel", ""))
        channel_id = self.channels.get(channel) or (
            channel if channel in self.channels.values() else None)
        if channel_id is None:
            return api_error("channel_not_found")
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # form-encoded requests carry blocks as a JSON string
            blocks = json.loads(blocks)
        if not args.get("text") and not blocks:
            return api_error("no_text")
        if blocks is not None and (errors := block_errors(blocks)):
            return Scripted(200, {"ok": False, "error": "invalid_blocks", "errors": errors})
        with self._lock:
            self._ts += 100
            ts = f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"
            thread_ts = args.get("thread_ts")
            self.messages.append(PostedMessage(channel_id, ts, thread_ts, str(args.get("text")),
                                               list(blocks or [])))
        message = {"type": "message", "text": args.get("text", ""), "ts": ts,
                   "user": "U0SPANWATCH", "bot_id": "B0SPANWATCH"}
        if thread_ts:
            message["thread_ts"] = thread_ts
        return Scripted(200, {"ok": True, "channel": channel_id, "ts": ts, "message": message})

    def _update(self, args: dict[str, Any]) -> Scripted:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        if channel not in self.channels.values():  # chat.update takes ids only
            return api_error("channel_not_found")
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not args.get("text") and not blocks:
            return api_error("no_text")
        if blocks is not None and (errors := block_errors(blocks)):
            return Scripted(200, {"ok": False, "error": "invalid_blocks", "errors": errors})
        with self._lock:
            found = [i for i, m in enumerate(self.messages) if (m.channel, m.ts) == (channel, ts)]
            if not found:
                return api_error("message_not_found")
            old = self.messages[found[0]]
            new = PostedMessage(channel, ts, old.thread_ts, str(args.get("text", "")),
                                list(blocks) if blocks is not None else old.blocks)
            self.messages[found[0]] = new
            self.edits.append(new)
        message = {"type": "message", "text": new.text, "ts": ts, "user": "U0SPANWATCH",
                   "bot_id": "B0SPANWATCH", "edited": {"user": "U0SPANWATCH", "ts": ts}}
        return Scripted(200, {"ok": True, "channel": channel, "ts": ts, "text": new.text,
                              "message": message})

    def _webhook(self, body: bytes) -> Scripted:
        try:
            payload = json.loads(body)
        except ValueError:
            return Scripted(400, "invalid_payload")
        if not isinstance(payload, dict):
            return Scripted(400, "invalid_payload")
        blocks = payload.get("blocks")
        if not payload.get("text") and not blocks:
            return Scripted(400, "no_text")
        if blocks is not None and block_errors(blocks):
            return Scripted(400, "invalid_blocks")
        with self._lock:
            self._ts += 100
            self.messages.append(PostedMessage("webhook", str(self._ts), None,
                                               str(payload.get("text")), list(blocks or [])))
        return Scripted(200, "ok")
