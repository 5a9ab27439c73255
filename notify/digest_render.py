"""The daily digest as text: the facts every rendering shares, and the Markdown file.

In: a `DigestReport`. Out: `DigestFacts` (lines used by Slack blocks and Markdown) and the
Markdown document written next to the Slack message.
"""

from __future__ import annotations

from dataclasses import dataclass

from notify.records import Contributor, DigestReport
from notify.render import fmt_time


@dataclass(frozen=True, slots=True)
class DigestFacts:
    overview: str
    models: tuple[tuple[str, float, float], ...]
    prompts: tuple[tuple[str, float, float], ...]
    quality: str
    alert_counts: str


def _rows(contributors: tuple[Contributor, ...]) -> tuple[tuple[str, float, float], ...]:
    return tuple((c.name, c.cost_usd, c.share_ratio) for c in contributors)


def quality_trend(report: DigestReport) -> str:
    now, before = report.quality_mean, report.quality_previous_mean
    if now is None:
        return "quality: no evaluation scores in this period"
    text = f"quality: mean score {now:.3f}"
    if before is None:
        return text + " (no scores in the period before)"
    change = now - before
    direction = "up" if change > 0 else "down" if change < 0 else "flat"
    relative = f", {change / before:+.1%}" if before else ""
    return text + f" ({direction} {change:+.3f} from {before:.3f}{relative} in the period before)"


def digest_facts(report: DigestReport) -> DigestFacts:
    rate = report.error_rate
    overview = (f"{report.requests:,} requests, error rate "
                f"{'n/a' if rate is None else f'{rate:.2%}'}, cost ${report.cost_usd:,.2f} "
                f"({fmt_time(report.period_start)} to {fmt_time(report.period_end)})")
    tiers = ", ".join(f"tier {t}: {c}" for t, c in report.alerts_by_tier) or "none"
    rules = ", ".join(f"{r.rule} (tier {r.tier}) x{r.count}" for r in report.alerts_by_rule)
    counts = f"alerts by tier: {tiers}" + (f"; by rule: {rules}" if rules else "")
    return DigestFacts(overview, _rows(report.top_models), _rows(report.top_prompt_versions),
                       quality_trend(report), counts)


def _table(title: str, rows: tuple[tuple[str, float, float], ...]) -> list[str]:
    out = [f"### {title}", ""]
    if not rows:
        return [*out, "none", ""]
    out += ["| name | cost (USD) | share |", "|---|---:|---:|"]
    out += [f"| {name.replace('|', '/')} | {cost:,.2f} | {share:.0%} |"
            for name, cost, share in rows]
    return [*out, ""]


def render_markdown(report: DigestReport) -> str:
    """The digest as a Markdown document."""
    facts = digest_facts(report)
    out = [f"# spanwatch digest {report.day.isoformat()} ({report.timezone})", "",
           facts.overview, "", "## Cost", ""]
    out += _table("Top models", facts.models)
    out += _table("Top prompt versions", facts.prompts)
    out += ["## Quality", "", facts.quality, "", "## Alerts", "", facts.alert_counts, "",
            "## Tier-3 alerts", ""]
    if not report.items:
        out.append("No tier-3 alerts in this period.")
    for item in report.items:
        out.append(f"- **{item.title}** ({fmt_time(item.at)})  ")
        out.append(f"  {item.summary}")
        if item.runbook:
            out.append(f"  runbook: {item.runbook}")
        for trace in item.traces:
            out.append(f"  trace [{trace.trace_id}]({trace.url})" if trace.url
                       else f"  trace `{trace.trace_id}`")
    return "\n".join(out) + "\n"
