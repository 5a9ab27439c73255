"""Notify stage entry: `AlertEvent`s in, one rendered, content-free `Notification` out.

Renders what an alert carries (DESIGN.md): rule, tier, series labels, observed value against
the threshold or baseline, window, start time, up to five exemplar trace links, the versions
live in the window and which changed near the onset, the runbook, and for cost alerts the
attribution of the change. Also the plain-text form shared by the console and file receivers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from string import Formatter
from urllib.parse import quote

from ingest.pricing import PriceTable
from notify.attribution import CostAttribution, attribution_of
from notify.records import AlertLine, Notification, NotificationKind, TraceLink
from rules.records import AlertEvent, Evaluation, Labels

MAX_EXEMPLARS = 5
MAX_DEDUP_KEY_LEN = 255  # PagerDuty Events API v2 limit for dedup_key
_KIND_MARK: dict[NotificationKind, str] = {
    "trigger": "FIRING", "update": "FIRING (update)", "repeat": "STILL FIRING",
    "resolve": "RESOLVED", "digest": "DIGEST"}


def validate_trace_url_template(template: str) -> str:
    """The template if it formats with `{trace_id}` and nothing else, else ValueError."""
    fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    if fields != {"trace_id"}:
        raise ValueError(f"trace_url_template {template!r} must contain {{trace_id}} and no "
                         "other {field}; e.g. http://jaeger:16686/trace/{trace_id}")
    return template


def trace_links(trace_ids: Sequence[str], template: str | None) -> tuple[TraceLink, ...]:
    """Up to five exemplar traces, linked through `template` when one is configured."""
    unique = list(dict.fromkeys(t for t in trace_ids if t))[:MAX_EXEMPLARS]
    return tuple(
        TraceLink(t, template.format(trace_id=quote(t, safe="")) if template else None)
        for t in unique)


def dedup_key(receiver: str, key: str) -> str:
    """The notification key for `key` (an alert fingerprint, group key or digest date) at
    `receiver`: readable when short, a hash when it would pass PagerDuty's 255 characters."""
    readable = f"spanwatch/{receiver}/{key}"
    if len(readable) <= MAX_DEDUP_KEY_LEN:
        return readable
    return "spanwatch/" + hashlib.sha256(f"{receiver}\0{key}".encode()).hexdigest()


def group_key(events: Sequence[AlertEvent]) -> str:
    """The key of a group of same-rule alerts: its fingerprint for one alert; for several, a
    hash of the rule and fingerprints (pass a stable `group_key` to keep one Slack thread when
    the members change)."""
    fingerprints = sorted({e.fingerprint for e in events})
    if len(fingerprints) == 1:
        return fingerprints[0]
    digest = hashlib.sha256("\0".join([events[0].rule, *fingerprints]).encode()).hexdigest()
    return f"group-{digest[:32]}"


def kind_of(event: AlertEvent) -> NotificationKind | None:
    """The notification kind a lifecycle transition maps to (None: nothing to say).

    A convenience for the caller; whether to notify at all is the lifecycle's decision.
    """
    if event.state == "resolved":
        return "resolve"
    if event.state != "firing":
        return None
    if event.is_repeat:
        return "repeat"
    return "update" if event.previous == "firing" else "trigger"


def fmt_number(value: float | None) -> str:
    """Four significant digits, no exponent for everyday magnitudes."""
    if value is None or math.isnan(value):
        return "n/a"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"


def fmt_duration(seconds: float) -> str:
    if seconds % 86400 == 0 and seconds >= 86400:
        return f"{seconds / 86400:g}d"
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def fmt_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def labels_text(labels: Labels) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels) or "(no labels)"


def _compared(e: Evaluation) -> str:
    if e.threshold is not None:
        return f"threshold {fmt_number(e.threshold)}"
    if e.baseline is not None:
        parts = [f"baseline {fmt_number(e.baseline)}"]
        if e.spread is not None:
            parts[0] += f" ± {fmt_number(e.spread)}"
        if e.value is not None and e.baseline not in (0, None):
            parts.append(f"{e.value / e.baseline:.2f}x baseline")
        if e.anomaly is not None:
            parts.append(f"score {fmt_number(e.anomaly)}")
        return ", ".join(parts)
    return "no threshold or baseline recorded"


def alert_line(event: AlertEvent, metric: str, trace_url_template: str | None) -> AlertLine:
    """One alert instance rendered from its latest event."""
    e = event.evaluation
    name = metric or event.rule
    return AlertLine(
        fingerprint=event.fingerprint, state=event.state, labels=tuple(sorted(event.labels)),
        value=e.value,
        value_text=f"{name} {fmt_number(e.value)}" if e.value is not None else f"{name}: no data",
        compared_text=_compared(e), window_s=e.window_s,
        started_at=datetime.fromtimestamp(event.started_at_unix_ns / 1e9, tz=UTC),
        at=event.at, traces=trace_links(e.exemplar_trace_ids, trace_url_template),
        versions=tuple((k, tuple(v)) for k, v in e.versions), changed=tuple(e.changed),
        detail=e.detail)


def build_notification(
    events: Sequence[AlertEvent], *, receiver: str, kind: NotificationKind,
    metric: str = "", runbook: str = "", trace_url_template: str | None = None,
    attribution: CostAttribution | None = None, key: str | None = None,
    is_test: bool = False, prices: PriceTable | None = None,
) -> Notification:
    """One notification for `receiver` about a group of same-rule alerts (often one).

    Args:
        events: the latest event of each alert in the group, all of one rule.
        kind: what to say (see `kind_of`); the lifecycle decides, this only renders.
        key: a stable group key; defaults to the fingerprint (one alert) or `group_key`.
        attribution: defaults to the split of the cost change that firing cost alerts carry
            (`Evaluation.cost`), with the type split of `prices` (see `attribution_of`).
    """
    if not events:
        raise ValueError("build_notification needs at least one AlertEvent")
    rules = {e.rule for e in events}
    if len(rules) != 1:
        raise ValueError(f"a notification groups alerts of one rule; got {sorted(rules)}")
    ordered = sorted(events, key=lambda e: (e.labels, e.fingerprint))
    lines = tuple(alert_line(e, metric, trace_url_template) for e in ordered)
    first = ordered[0]
    rule, tier = first.rule, max(e.tier for e in events)
    mark = ("TEST " if is_test else "") + _KIND_MARK[kind]
    if len(lines) == 1:
        line = lines[0]
        title = f"[{mark}] {rule}: {line.value_text} ({labels_text(line.labels)})"
        summary = (f"{line.value_text} vs {line.compared_text} over "
                   f"{fmt_duration(line.window_s)}, since {fmt_time(line.started_at)}")
    else:
        title = f"[{mark}] {rule}: {len(lines)} series"
        summary = "; ".join(f"{labels_text(x.labels)}: {x.value_text}" for x in lines)
    if is_test:
        summary = "spanwatch test-receiver: not a real incident. " + summary
    if attribution is None and kind != "resolve":
        attribution = attribution_of([e.evaluation.cost for e in ordered
                                      if e.state == "firing" and e.evaluation.cost is not None],
                                     prices)
    return Notification(
        receiver=receiver, kind=kind, dedup_key=dedup_key(receiver, key or group_key(events)),
        sequence=max(e.at_unix_ns for e in events), rule=rule, tier=tier, title=title,
        summary=summary, alerts=lines, metric=metric, runbook=runbook,
        attribution=attribution, is_test=is_test)


def versions_text(line: AlertLine) -> str:
    """"prompt_template_version: v12, v13 (changed near onset); model: gpt-4o"."""
    parts = []
    for name, values in line.versions:
        text = f"{name}: {', '.join(values) or 'n/a'}"
        if name in line.changed:
            text += " (changed near onset)"
        parts.append(text)
    extra = [c for c in line.changed if c not in dict(line.versions)]
    parts.extend(f"{c} changed near onset" for c in extra)
    return "; ".join(parts)


def plain_text(n: Notification) -> str:
    """A readable multi-line rendering (console and file receivers, test-receiver output)."""
    if n.digest is not None:
        from notify.digest_render import render_markdown  # noqa: PLC0415 - digest-only path

        return render_markdown(n.digest)
    out = [n.title, f"  rule {n.rule} (tier {n.tier}) {n.summary}"]
    for line in n.alerts:
        out.append(f"  - {labels_text(line.labels)}: {line.value_text} vs {line.compared_text}; "
                   f"window {fmt_duration(line.window_s)}; started {fmt_time(line.started_at)}")
        if line.versions or line.changed:
            out.append(f"    versions: {versions_text(line)}")
        for trace in line.traces:
            out.append(f"    trace {trace.trace_id}" + (f" {trace.url}" if trace.url else ""))
        if line.detail:
            out.append(f"    {line.detail}")
    if n.attribution is not None:
        out.extend(f"  {text}" for text in n.attribution.lines())
    if n.runbook:
        out.append(f"  runbook: {n.runbook}")
    return "\n".join(out)
