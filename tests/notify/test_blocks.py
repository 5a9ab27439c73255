"""Block Kit rendering stays within Slack's limits and says what it cut."""

from __future__ import annotations

from datetime import UTC, date, datetime

from notify.blocks import (
    MARK,
    MAX_BLOCKS,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    alert_message,
    digest_message,
    escape,
)
from notify.records import DigestItem, DigestReport
from notify.render import build_notification
from tests.fakes.slack_server import block_errors
from tests.notify.conftest import make_event


def test_sixty_alerts_fit_in_fifty_blocks_with_a_marker() -> None:
    events = [make_event(labels=(("service", f"svc-{i:02d}"),)) for i in range(60)]
    message = alert_message(build_notification(events, receiver="slack", kind="trigger",
                                               runbook="Check the provider."))
    assert len(message.blocks) <= MAX_BLOCKS
    assert block_errors(list(message.blocks)) == []
    markers = [b for b in message.blocks if b["type"] == "context"
               and "more alerts not shown" in b["elements"][0]["text"]]
    (marker,) = markers
    shown = sum(1 for b in message.blocks if b["type"] == "section") - 1  # minus the summary
    assert marker["elements"][0]["text"] == (
        f":scissors: {60 - shown} more alerts not shown (Slack allows 50 blocks per message)")
    assert f"{60 - shown} of 60 alerts not shown" in message.truncated
    assert message.blocks[-1]["elements"][0]["text"] == "*Runbook:* Check the provider."


def test_long_texts_are_cut_with_a_marker() -> None:
    labels = tuple((f"k{i}", "v" * 200) for i in range(30))  # ~6000 characters of labels
    n = build_notification([make_event(labels=labels)], receiver="slack", kind="trigger")
    message = alert_message(n)
    assert block_errors(list(message.blocks)) == []
    header = message.blocks[0]["text"]["text"]
    assert len(header) == MAX_HEADER_TEXT and header.endswith(MARK)
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    assert all(len(s) <= MAX_SECTION_TEXT for s in sections)
    assert any(s.endswith(MARK) for s in sections)
    assert "header cut to 150 characters" in message.truncated
    assert "alert cut to 3000 characters" in message.truncated


def test_labels_are_escaped_for_mrkdwn() -> None:
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"
    n = build_notification([make_event(labels=(("route", "<script>"),))], receiver="s",
                           kind="trigger")
    assert "&lt;script&gt;" in alert_message(n).blocks[2]["text"]["text"]


def test_a_digest_with_many_items_fits_and_points_to_the_markdown() -> None:
    at = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)
    items = tuple(DigestItem(rule="latency-trend", kind="trigger", title=f"[FIRING] item {i}",
                             summary="p95 up 12% over 7 days", at=at) for i in range(80))
    report = DigestReport(
        receiver="digest", day=date(2024, 5, 6), timezone="Europe/Berlin",
        period_start=at, period_end=at, requests=10, errors=1, cost_usd=1.5, top_models=(),
        top_prompt_versions=(), quality_mean=None, quality_previous_mean=None,
        alerts_by_tier=(), alerts_by_rule=(), items=items)
    message = digest_message(report)
    assert len(message.blocks) == MAX_BLOCKS
    assert block_errors(list(message.blocks)) == []
    assert message.blocks[-1]["elements"][0]["text"].endswith(
        "more tier-3 alerts not shown; see the Markdown digest")
