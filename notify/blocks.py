"""Slack Block Kit rendering of a `Notification` or a `DigestReport`, within Slack's limits.

Limits (https://api.slack.com/reference/block-kit/blocks): 50 blocks per message, 3000
characters of section text, 150 of header text, 10 context elements. What does not fit is cut
with a visible marker and the renderer says so (`SlackMessage.truncated`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notify.digest_render import digest_facts
from notify.records import AlertLine, DigestReport, Notification, NotificationKind
from notify.render import fmt_duration, fmt_time, labels_text, versions_text

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FALLBACK_TEXT = 3000  # Slack cuts `text` at 40,000; notifications stay readable far below
MARK = "…[truncated]"

Block = dict[str, Any]

_EMOJI: dict[NotificationKind, str] = {
    "trigger": ":red_circle:", "update": ":large_orange_circle:", "repeat": ":bell:",
    "resolve": ":large_green_circle:", "digest": ":newspaper:"}


@dataclass(frozen=True, slots=True)
class SlackMessage:
    text: str
    """Fallback text (notifications, screen readers)."""
    blocks: tuple[Block, ...]
    truncated: tuple[str, ...] = ()
    """What was cut to fit Slack's limits, for the delivery answer and logs."""


def escape(text: str) -> str:
    """Slack mrkdwn escaping (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[: limit - len(MARK)] + MARK, True


class _Builder:
    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.truncated: list[str] = []

    def header(self, text: str) -> None:
        text, is_cut = cut(text, MAX_HEADER_TEXT)
        if is_cut:
            self.truncated.append(f"header cut to {MAX_HEADER_TEXT} characters")
        self.blocks.append({"type": "header",
                            "text": {"type": "plain_text", "text": text, "emoji": True}})

    def section(self, mrkdwn: str, what: str = "section") -> None:
        if not mrkdwn.strip():
            return  # Slack rejects empty section text
        text, is_cut = cut(mrkdwn, MAX_SECTION_TEXT)
        if is_cut:
            self.truncated.append(f"{what} cut to {MAX_SECTION_TEXT} characters")
        self.blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})

    def context(self, *texts: str) -> None:
        elements = [{"type": "mrkdwn", "text": cut(t, MAX_SECTION_TEXT)[0]} for t in texts if t]
        if elements:
            self.blocks.append({"type": "context", "elements": elements[:10]})

    def divider(self) -> None:
        self.blocks.append({"type": "divider"})


def _alert_text(line: AlertLine, *, is_detailed: bool) -> str:
    parts = [f"*{escape(labels_text(line.labels))}*",
             f"{escape(line.value_text)} vs {escape(line.compared_text)} "
             f"over {fmt_duration(line.window_s)}, since {fmt_time(line.started_at)}"]
    if is_detailed and (line.versions or line.changed):
        mark = ":warning: " if line.changed else ""
        parts.append(f"{mark}versions: {escape(versions_text(line))}")
    if line.traces:
        links = [f"<{t.url}|{t.trace_id[:16]}>" if t.url else f"`{t.trace_id}`"
                 for t in line.traces]
        parts.append("traces: " + " · ".join(links))
    if is_detailed and line.detail:
        parts.append(escape(line.detail))
    return "\n".join(parts)


def alert_message(n: Notification) -> SlackMessage:
    """The Slack message for an alert notification (trigger, update, repeat, resolve)."""
    b = _Builder()
    mark = ":test_tube: " if n.is_test else ""
    b.header(f"{mark}{_EMOJI[n.kind]} {n.title}")
    b.section(escape(n.summary), "summary")
    tail = _Builder()
    if n.attribution is not None:
        tail.section("*Cost change*\n" + "\n".join(escape(t) for t in n.attribution.lines()),
                     "cost attribution")
    tail.context(*(["*Runbook:* " + escape(n.runbook)] if n.runbook else []),
                 f"rule `{escape(n.rule)}` · tier {n.tier} · {n.kind}"
                 + (" · spanwatch test-receiver, not a real incident" if n.is_test else ""))
    # One section per alert; keep room for the tail and one "more alerts" marker.
    room = MAX_BLOCKS - len(b.blocks) - len(tail.blocks) - 1
    shown = n.alerts if len(n.alerts) <= room + 1 else n.alerts[:room]
    for line in shown:
        b.section(_alert_text(line, is_detailed=len(n.alerts) == 1), "alert")
    if len(shown) < len(n.alerts):
        hidden = len(n.alerts) - len(shown)
        b.context(f":scissors: {hidden} more alerts not shown (Slack allows {MAX_BLOCKS} "
                  "blocks per message)")
        b.truncated.append(f"{hidden} of {len(n.alerts)} alerts not shown")
    b.blocks.extend(tail.blocks)
    b.truncated.extend(tail.truncated)
    text, is_cut = cut(f"{n.title}: {n.summary}", MAX_FALLBACK_TEXT)
    if is_cut:
        b.truncated.append(f"fallback text cut to {MAX_FALLBACK_TEXT} characters")
    return SlackMessage(text, tuple(b.blocks), tuple(b.truncated))


def resolved_root_message(resolve: Notification) -> SlackMessage:
    """What an alert's root message becomes when the alert resolves (Slack chat.update): the
    resolved title and when it resolved, above what the root said when it was posted (or,
    when the outbox no longer has that, the resolve's own details)."""
    root = resolve.thread_root or resolve
    lines = resolve.alerts
    text = f"Resolved {fmt_time(max(x.at for x in lines))}" if lines else "Resolved"
    if lines:
        started = min(x.started_at for x in lines)
        text += (f" after {fmt_duration((max(x.at for x in lines) - started).total_seconds())} "
                 f"(since {fmt_time(started)})")
    if resolve.thread_root is not None:
        text += ". As first posted:"
    original = alert_message(root)
    b = _Builder()
    mark = ":test_tube: " if resolve.is_test else ""
    b.header(f"{mark}{_EMOJI['resolve']} {resolve.title}")
    b.section(escape(text), "resolved")
    blocks = [*b.blocks, *original.blocks[1:]]  # the original without its header
    truncated = [*b.truncated, *original.truncated]
    if len(blocks) > MAX_BLOCKS:  # keep the tail (cost change, runbook and rule context)
        blocks = [*blocks[:MAX_BLOCKS - 2], *blocks[-2:]]
        truncated.append(f"root message cut to {MAX_BLOCKS} blocks")
    fallback, _ = cut(f"{resolve.title}: {text}", MAX_FALLBACK_TEXT)
    return SlackMessage(fallback, tuple(blocks), tuple(truncated))


def _contributors(title: str, rows: tuple[tuple[str, float, float], ...]) -> str:
    lines = [f"*{title}*"] + [f"• {escape(name)}: ${cost:,.2f} ({share:.0%})"
                               for name, cost, share in rows]
    return "\n".join(lines) if rows else f"*{title}*\n• none"


def digest_message(report: DigestReport) -> SlackMessage:
    """The Slack message of a daily digest."""
    facts = digest_facts(report)
    b = _Builder()
    b.header(f"{_EMOJI['digest']} spanwatch digest {report.day.isoformat()}")
    b.section(escape(facts.overview), "overview")
    b.section(_contributors("Cost by model", facts.models) + "\n"
              + _contributors("Cost by prompt version", facts.prompts), "cost")
    b.section(escape(facts.quality) + "\n" + escape(facts.alert_counts), "quality and alerts")
    b.divider()
    items = report.items
    room = MAX_BLOCKS - len(b.blocks) - 1
    shown = items if len(items) <= room + 1 else items[:room]
    if not items:
        b.section("No tier-3 alerts in this period.")
    for item in shown:
        links = " · ".join(f"<{t.url}|{t.trace_id[:16]}>" for t in item.traces if t.url)
        b.section("\n".join(x for x in (
            f"*{escape(item.title)}*", escape(item.summary),
            f"runbook: {escape(item.runbook)}" if item.runbook else "",
            f"traces: {links}" if links else "") if x), "digest item")
    if len(shown) < len(items):
        hidden = len(items) - len(shown)
        b.context(f":scissors: {hidden} more tier-3 alerts not shown; see the Markdown digest")
        b.truncated.append(f"{hidden} of {len(items)} digest items not shown")
    text = f"spanwatch digest {report.day.isoformat()}: {facts.overview}"
    return SlackMessage(cut(text, MAX_FALLBACK_TEXT)[0], tuple(b.blocks), tuple(b.truncated))


def message_for(n: Notification) -> SlackMessage:
    if n.digest is not None:
        return digest_message(n.digest)
    return alert_message(n)
