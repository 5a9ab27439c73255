"""The Slack notifier: the real slack_sdk clients against a local Slack server."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import SecretStr

from notify.blocks import alert_message, resolved_root_message
from notify.records import Delivered, Failed, MessageRef, Retry
from notify.render import build_notification
from notify.slack import SlackNotifier
from tests.fakes.slack_server import FakeSlack, Scripted, api_error, rate_limited
from tests.notify.conftest import BOT_TOKEN, WEBHOOK_SECRET, make_event

JAEGER = "http://jaeger:16686/trace/{trace_id}"


def bot(fake: FakeSlack, channel: str = "#llm-alerts") -> SlackNotifier:
    return SlackNotifier("slack", bot_token=SecretStr(BOT_TOKEN), channel=channel,
                         url=fake.api_url)


def webhook(fake: FakeSlack) -> SlackNotifier:
    return SlackNotifier("slack", webhook_url=SecretStr(fake.webhook_url))


def test_a_bot_message_is_one_exact_chat_post_message(slack: FakeSlack) -> None:
    n = build_notification([make_event()], receiver="slack", kind="trigger",
                           metric="error_rate", runbook="Roll back.", trace_url_template=JAEGER)
    delivery = bot(slack).send(n)
    (request,) = slack.requests
    assert (request.method, request.path) == ("POST", "/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.headers["content-type"] == "application/json;charset=utf-8"
    message = alert_message(n)
    assert request.json() == {"channel": "#llm-alerts", "text": message.text,
                              "blocks": list(message.blocks), "unfurl_links": False,
                              "unfurl_media": False}
    (posted,) = slack.messages
    assert delivery == Delivered(
        f"Slack answered ok: posted as a new message, channel=C0LLMALERTS ts={posted.ts}",
        message=MessageRef("C0LLMALERTS", posted.ts))


def test_the_blocks_show_what_an_alert_carries(slack: FakeSlack) -> None:
    n = build_notification([make_event()], receiver="slack", kind="trigger",
                           metric="error_rate", runbook="Roll back.", trace_url_template=JAEGER)
    bot(slack).send(n)
    blocks = slack.requests[0].json()["blocks"]
    assert blocks[0] == {"type": "header", "text": {
        "type": "plain_text", "emoji": True,
        "text": ":red_circle: [FIRING] error-rate-high: error_rate 0.12 (model=gpt-4o, "
                "service=chat)"}}
    assert blocks[1]["text"]["text"] == ("error_rate 0.12 vs threshold 0.05 over 5m, since "
                                         "2024-05-06 11:55:00Z")
    detail = blocks[2]["text"]["text"]
    assert detail.splitlines()[0] == "*model=gpt-4o, service=chat*"
    assert (":warning: versions: prompt_template_version: v12, v13 (changed near onset); "
            "model: gpt-4o") in detail
    assert "<http://jaeger:16686/trace/00000000000000000000000000000001|0000000000000000>" \
        in detail
    assert blocks[-1] == {"type": "context", "elements": [
        {"type": "mrkdwn", "text": "*Runbook:* Roll back."},
        {"type": "mrkdwn", "text": "rule `error-rate-high` · tier 1 · trigger"}]}


def test_a_reply_goes_into_the_thread_by_channel_id(slack: FakeSlack) -> None:
    sl = bot(slack)
    root = sl.send(build_notification([make_event()], receiver="slack", kind="trigger"))
    assert isinstance(root, Delivered) and root.message is not None
    resolve = build_notification([make_event(state="resolved", previous="firing", at_s=60)],
                                 receiver="slack", kind="resolve")
    reply = sl.send(replace(resolve, thread=root.message))
    assert isinstance(reply, Delivered)
    assert reply.message is None  # a reply never becomes the alert's thread
    body = slack.requests[-1].json()  # after the root's edit (see below)
    assert (body["channel"], body["thread_ts"]) == ("C0LLMALERTS", root.message.ts)
    assert slack.messages[1].thread_ts == root.message.ts


def test_an_update_without_a_known_thread_starts_one(slack: FakeSlack) -> None:
    update = build_notification([make_event(previous="firing")], receiver="slack", kind="update")
    delivery = bot(slack).send(update)
    assert isinstance(delivery, Delivered) and delivery.message is not None
    assert "thread_ts" not in slack.requests[0].json()


@pytest.mark.parametrize(("answer", "expected"), [
    (api_error("channel_not_found"), Failed("Slack error channel_not_found: channel_not_found")),
    (api_error("not_in_channel"), Failed("Slack error not_in_channel: not_in_channel")),
    (api_error("invalid_auth"), Failed("Slack error invalid_auth: invalid_auth")),
    (api_error("internal_error"), Retry(None, "Slack error internal_error: internal_error")),
    (api_error("service_unavailable"),
     Retry(None, "Slack error service_unavailable: service_unavailable")),
    (rate_limited(30), Retry(timedelta(seconds=30), "Slack answered 429: ratelimited")),
    (Scripted(503, "<html>Service Unavailable</html>"),
     Retry(None, "Slack answered 503: Received a response in a non-JSON format: "
                 "<html>Service Unavailable</html>")),
    (Scripted(404, {"ok": False, "error": "unknown_method"}),
     Failed("Slack answered 404: unknown_method")),
])
def test_web_api_answers_become_deliveries(slack: FakeSlack, answer: Scripted,
                                           expected: object) -> None:
    slack.script(answer)
    assert bot(slack).send(build_notification([make_event()], receiver="slack",
                                               kind="trigger")) == expected
    assert len(slack.requests) == 1  # slack_sdk's own retry handlers are off


def test_invalid_blocks_quote_slacks_details(slack: FakeSlack) -> None:
    slack.script(Scripted(200, {"ok": False, "error": "invalid_blocks",
                                "errors": ["must be less than 51 items [json-pointer:/blocks]"]}))
    delivery = bot(slack).send(build_notification([make_event()], receiver="s", kind="trigger"))
    assert delivery == Failed("Slack error invalid_blocks: invalid_blocks (must be less than "
                              "51 items [json-pointer:/blocks])")


def test_a_wrong_token_is_a_failure(slack: FakeSlack) -> None:
    wrong = SlackNotifier("slack", bot_token=SecretStr("xoxb-wrong"), channel="#llm-alerts",
                          url=slack.api_url)
    assert wrong.send(build_notification([make_event()], receiver="s", kind="trigger")) == \
        Failed("Slack error invalid_auth: invalid_auth")


def test_a_webhook_message_is_one_exact_post(slack: FakeSlack) -> None:
    n = build_notification([make_event()], receiver="slack", kind="trigger", metric="error_rate")
    delivery = webhook(slack).send(n)
    assert delivery == Delivered("Slack webhook answered 200 ok")
    (request,) = slack.requests
    assert request.path == f"/services/T00000000/B00000000/{WEBHOOK_SECRET}"
    assert "authorization" not in request.headers
    message = alert_message(n)
    assert request.json() == {"text": message.text, "blocks": list(message.blocks),
                              "unfurl_links": False, "unfurl_media": False}


@pytest.mark.parametrize(("answer", "expected"), [
    (Scripted(400, "invalid_payload"), Failed("Slack webhook answered 400: invalid_payload")),
    (Scripted(403, "action_prohibited"),
     Failed("Slack webhook answered 403: action_prohibited")),
    (Scripted(410, "channel_is_archived"),
     Failed("Slack webhook answered 410: channel_is_archived")),
    (rate_limited(9, webhook=True),
     Retry(timedelta(seconds=9), "Slack webhook answered 429: rate_limited")),
    (Scripted(500, "oops"), Retry(None, "Slack webhook answered 500: oops")),
])
def test_webhook_answers_become_deliveries(slack: FakeSlack, answer: Scripted,
                                           expected: object) -> None:
    slack.script(answer)
    assert webhook(slack).send(build_notification([make_event()], receiver="slack",
                                                  kind="trigger")) == expected
    assert len(slack.requests) == 1


def test_an_unreachable_webhook_is_a_retry(slack: FakeSlack) -> None:
    sl = webhook(slack)
    slack.down()
    assert sl.send(build_notification([make_event()], receiver="s", kind="trigger")) == Retry(
        None, "connection error: URLError: [Errno 111] Connection refused")


def test_url_overrides_the_webhook_endpoint(slack: FakeSlack) -> None:
    gateway = SlackNotifier("slack", url=slack.webhook_url)
    assert isinstance(gateway.send(build_notification([make_event()], receiver="s",
                                                      kind="trigger")), Delivered)


def test_a_bot_token_without_a_channel_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="a bot token needs `channel`"):
        SlackNotifier("slack", bot_token=SecretStr(BOT_TOKEN))
    with pytest.raises(ValueError, match="set a webhook URL or a bot token"):
        SlackNotifier("slack")


def test_a_resolve_edits_the_root_message_then_replies_in_its_thread(slack: FakeSlack) -> None:
    sl = bot(slack)
    trigger = build_notification([make_event()], receiver="slack", kind="trigger",
                                 metric="error_rate", runbook="Roll back.")
    root = sl.send(trigger)
    assert isinstance(root, Delivered) and root.message is not None
    resolve = replace(build_notification(
        [make_event(state="resolved", previous="firing", at_s=600, value=0.01)],
        receiver="slack", kind="resolve", metric="error_rate", runbook="Roll back."),
        thread=root.message, thread_root=trigger)
    delivery = sl.send(resolve)
    assert [r.path for r in slack.requests] == [
        "/api/chat.postMessage", "/api/chat.update", "/api/chat.postMessage"]
    edit = resolved_root_message(resolve)
    assert slack.requests[1].json() == {"channel": "C0LLMALERTS", "ts": root.message.ts,
                                        "text": edit.text, "blocks": list(edit.blocks)}
    assert slack.requests[1].headers["authorization"] == f"Bearer {BOT_TOKEN}"
    (edited,) = slack.edits
    assert slack.messages[0] == edited  # the root now reads resolved
    assert edited.blocks[0]["text"]["text"] == (
        ":large_green_circle: [RESOLVED] error-rate-high: error_rate 0.01 (model=gpt-4o, "
        "service=chat)")
    assert edited.blocks[1]["text"]["text"] == (
        "Resolved 2024-05-06 12:10:00Z after 15m (since 2024-05-06 11:55:00Z). "
        "As first posted:")
    # What the root said when it fired stays below (its summary, the alert, the runbook).
    assert edited.blocks[2:] == list(alert_message(trigger).blocks[1:])
    reply = slack.messages[1]
    assert (reply.thread_ts, reply.text) == (root.message.ts, alert_message(resolve).text)
    assert isinstance(delivery, Delivered)
    assert delivery.detail == (
        f"Slack answered ok: posted in thread {root.message.ts}, channel=C0LLMALERTS "
        f"ts={reply.ts}; root message {root.message.ts} edited to resolved")


def test_without_its_first_notification_the_root_shows_the_resolve(slack: FakeSlack) -> None:
    sl = bot(slack)
    root = sl.send(build_notification([make_event()], receiver="slack", kind="trigger"))
    assert isinstance(root, Delivered) and root.message is not None
    resolve = replace(build_notification([make_event(state="resolved", previous="firing",
                                                     at_s=60)], receiver="slack",
                                         kind="resolve"), thread=root.message)
    sl.send(resolve)
    (edited,) = slack.edits
    assert edited.blocks[1]["text"]["text"].startswith("Resolved 2024-05-06 12:01:00Z")
    assert edited.blocks[2:] == list(alert_message(resolve).blocks[1:])


@pytest.mark.parametrize("code", ["cant_update_message", "edit_window_closed"])
def test_a_root_slack_will_not_edit_still_gets_the_resolve_reply(slack: FakeSlack,
                                                                 code: str) -> None:
    sl = bot(slack)
    root = sl.send(build_notification([make_event()], receiver="slack", kind="trigger"))
    assert isinstance(root, Delivered) and root.message is not None
    slack.script(api_error(code))
    delivery = sl.send(replace(build_notification(
        [make_event(state="resolved", previous="firing", at_s=60)], receiver="slack",
        kind="resolve"), thread=root.message))
    assert [r.path for r in slack.requests][1:] == ["/api/chat.update", "/api/chat.postMessage"]
    assert slack.edits == []
    assert isinstance(delivery, Delivered)
    assert delivery.detail.endswith(f"; root message not edited: Slack error {code}: {code}")


def test_a_deleted_root_message_is_reported_by_slack_and_the_reply_still_goes(
        slack: FakeSlack) -> None:
    sl = bot(slack)
    gone = MessageRef("C0LLMALERTS", "1715000000.999999")
    delivery = sl.send(replace(build_notification(
        [make_event(state="resolved", previous="firing", at_s=60)], receiver="slack",
        kind="resolve"), thread=gone))
    assert slack.requests[0].path == "/api/chat.update"
    assert isinstance(delivery, Delivered)
    assert delivery.detail.endswith("; root message not edited: Slack error "
                                    "message_not_found: message_not_found")
    assert slack.messages[0].thread_ts == gone.ts


@pytest.mark.parametrize(("answer", "expected"), [
    (rate_limited(5), Retry(timedelta(seconds=5),
                            "editing the root message: Slack answered 429: ratelimited")),
    (api_error("internal_error"),
     Retry(None, "editing the root message: Slack error internal_error: internal_error")),
])
def test_an_unavailable_edit_retries_the_resolve_before_any_reply(
        slack: FakeSlack, answer: Scripted, expected: Retry) -> None:
    sl = bot(slack)
    root = sl.send(build_notification([make_event()], receiver="slack", kind="trigger"))
    assert isinstance(root, Delivered) and root.message is not None
    slack.script(answer)
    resolve = replace(build_notification(
        [make_event(state="resolved", previous="firing", at_s=60)], receiver="slack",
        kind="resolve"), thread=root.message)
    assert sl.send(resolve) == expected
    assert [r.path for r in slack.requests][1:] == ["/api/chat.update"]  # nothing posted
    assert isinstance(sl.send(resolve), Delivered)  # the retry: edit, then one reply
    assert [r.path for r in slack.requests][2:] == ["/api/chat.update", "/api/chat.postMessage"]
    assert [m.thread_ts for m in slack.messages] == [None, root.message.ts]
