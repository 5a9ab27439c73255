"""The fake vendor servers answer like PagerDuty's Events API v2 and Slack (plain HTTP client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.pagerduty_server import THROTTLED, FakePagerDuty, Scripted, server_error
from tests.fakes.slack_server import FakeSlack, api_error, block_errors, rate_limited

KEY = "0123456789abcdef0123456789abcdef"


def post(url: str, body: object, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={  # noqa: S310
        "Content-Type": "application/json", **(headers or {})})  # (http to the local fake)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers.items()), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read().decode()


def trigger(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"routing_key": KEY, "event_action": "trigger", "dedup_key": "a",
                             "payload": {"summary": "s", "source": "x", "severity": "critical"}}
    event.update(overrides)
    return event


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(KEY) as fake:
        yield fake


@pytest.fixture
def sl() -> Iterator[FakeSlack]:
    with FakeSlack(bot_token="xoxb-t", webhook_secret="WEBHOOKSECRET") as fake:
        yield fake


def test_pagerduty_accepts_a_valid_event_with_202_and_the_dedup_key(pd: FakePagerDuty) -> None:
    status, _, body = post(f"{pd.url}/v2/enqueue", trigger())
    assert status == 202
    assert json.loads(body) == {"status": "success", "message": "Event processed",
                                "dedup_key": "a"}
    assert pd.alerts == {"a": "triggered"}
    post(f"{pd.url}/v2/enqueue", {"routing_key": KEY, "event_action": "resolve", "dedup_key": "a"})
    assert pd.alerts == {"a": "resolved"}


def test_pagerduty_generates_a_dedup_key_when_the_trigger_has_none(pd: FakePagerDuty) -> None:
    event = trigger()
    del event["dedup_key"]
    _, _, body = post(f"{pd.url}/v2/enqueue", event)
    assert json.loads(body)["dedup_key"].startswith("pd-")


@pytest.mark.parametrize(("event", "error"), [
    (trigger(routing_key="short"),
     "Length of 'routing_key' is incorrect (should be 32 characters)"),
    (trigger(routing_key="f" * 32), "'routing_key' is invalid"),
    (trigger(payload={"summary": "s", "source": "x", "severity": "loud"}),
     "'payload.severity' is invalid (must be one of: critical, error, warning, info)"),
    (trigger(payload={"summary": "s" * 1025, "source": "x", "severity": "info"}),
     "'payload.summary' is too long (maximum 1024 characters)"),
    (trigger(dedup_key="k" * 256), "'dedup_key' is too long (maximum 255 characters)"),
    ({"routing_key": KEY, "event_action": "resolve"}, "'dedup_key' is missing or blank"),
])
def test_pagerduty_rejects_invalid_events_with_400_and_the_reason(
        pd: FakePagerDuty, event: dict[str, Any], error: str) -> None:
    status, _, body = post(f"{pd.url}/v2/enqueue", event)
    assert status == 400
    assert json.loads(body) == {"status": "invalid event", "message": "Event object is invalid",
                                "errors": [error]}


def test_pagerduty_scripted_answers_come_first_then_normal_ones(pd: FakePagerDuty) -> None:
    pd.script(Scripted(429, THROTTLED.body, {"Retry-After": "3"}), server_error(503))
    first, second, third = (post(f"{pd.url}/v2/enqueue", trigger()) for _ in range(3))
    assert first[0] == 429 and first[1]["Retry-After"] == "3"
    assert second[0] == 503
    assert third[0] == 202
    assert [r.status for r in pd.requests] == [429, 503, 202]


def test_pagerduty_down_refuses_connections_and_up_serves_on_the_same_port(
        pd: FakePagerDuty) -> None:
    url = pd.url
    pd.down()
    with pytest.raises(urllib.error.URLError):
        post(f"{url}/v2/enqueue", trigger())
    pd.up()
    assert pd.url == url
    assert post(f"{url}/v2/enqueue", trigger())[0] == 202


def test_slack_posts_a_message_and_returns_channel_id_and_ts(sl: FakeSlack) -> None:
    status, _, body = post(f"{sl.api_url}chat.postMessage",
                           {"channel": "#llm-alerts", "text": "hi"},
                           {"Authorization": "Bearer xoxb-t"})
    answer = json.loads(body)
    assert status == 200 and answer["ok"] is True
    assert answer["channel"] == "C0LLMALERTS"
    reply = json.loads(post(f"{sl.api_url}chat.postMessage",
                            {"channel": "C0LLMALERTS", "text": "r", "thread_ts": answer["ts"]},
                            {"Authorization": "Bearer xoxb-t"})[2])
    assert reply["message"]["thread_ts"] == answer["ts"]
    assert [m.thread_ts for m in sl.messages] == [None, answer["ts"]]


@pytest.mark.parametrize(("headers", "body", "error"), [
    ({}, {"channel": "#llm-alerts", "text": "x"}, "not_authed"),
    ({"Authorization": "Bearer wrong"}, {"channel": "#llm-alerts", "text": "x"}, "invalid_auth"),
    ({"Authorization": "Bearer xoxb-t"}, {"channel": "#nope", "text": "x"}, "channel_not_found"),
    ({"Authorization": "Bearer xoxb-t"}, {"channel": "#llm-alerts"}, "no_text"),
    ({"Authorization": "Bearer xoxb-t"},
     {"channel": "#llm-alerts", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
])
def test_slack_web_api_errors_are_http_200_with_ok_false(
        sl: FakeSlack, headers: dict[str, str], body: dict[str, Any], error: str) -> None:
    status, _, text = post(f"{sl.api_url}chat.postMessage", body, headers)
    assert status == 200
    assert json.loads(text)["ok"] is False
    assert json.loads(text)["error"] == error


def test_slack_rate_limit_is_429_with_retry_after(sl: FakeSlack) -> None:
    sl.script(rate_limited(30), api_error("internal_error"))
    status, headers, text = post(f"{sl.api_url}chat.postMessage", {}, {})
    assert (status, headers["Retry-After"], json.loads(text)) == (
        429, "30", {"ok": False, "error": "ratelimited"})
    assert json.loads(post(f"{sl.api_url}chat.postMessage", {}, {})[2])["error"] == \
        "internal_error"


def test_slack_webhook_answers_ok_or_plain_text_errors(sl: FakeSlack) -> None:
    assert post(sl.webhook_url, {"text": "hi"})[::2] == (200, "ok")
    assert post(sl.webhook_url, {})[::2] == (400, "no_text")
    assert post(sl.webhook_url, b"{not json")[::2] == (400, "invalid_payload")
    assert post(sl.webhook_url + "x", {"text": "hi"})[::2] == (404, "no_service")
    sl.script(rate_limited(5, webhook=True))
    status, headers, _ = post(sl.webhook_url, {"text": "hi"})
    assert (status, headers["Retry-After"]) == (429, "5")


def test_block_limits_are_checked_like_slack() -> None:
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    long_header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
    assert block_errors([long_section, long_header]) == [
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        "must be less than 151 characters [json-pointer:/blocks/1/text/text]"]
    assert block_errors([{"type": "divider"}] * 50) == []


def test_wait_for_returns_false_at_the_deadline(sl: FakeSlack) -> None:
    assert sl.wait_for(lambda: False, timeout_s=0.05) is False
