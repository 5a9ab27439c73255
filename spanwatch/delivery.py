"""From the flow's outputs to the notify stage: alert groups become notifications (which
receivers, which kind, which key) in the durable outbox; normalised spans become the usage
summary of the daily digest.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from datetime import UTC, datetime

from ingest.assembly import Record
from ingest.span import EvalResult, EvalScore, LLMSpan
from metrics.bucket import MINUTE_NS
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from notify.digest_store import DigestStore, UsageSample
from notify.runtime import NotifyRuntime
from rules.config import RulesConfig
from rules.grouping import AlertGroup
from rules.records import AlertEvent

log = logging.getLogger("spanwatch.delivery")


def group_kind(group: AlertGroup) -> str:
    """trigger when the group announces new alerts, resolve when nothing fires any more,
    repeat for reminders, update otherwise."""
    if not group.firing:
        return "resolve"
    if group.new:
        return "trigger"
    return "repeat" if group.is_repeat else "update"


class GroupNotifier:
    """The flow's `groups` sink: renders each group for its tier's receivers and enqueues it.

    The outbox makes this idempotent: a group replayed after a restart has the same dedup key
    and sequence, so it is not sent twice.
    """

    def __init__(self, runtime: NotifyRuntime, rules: RulesConfig) -> None:
        self._runtime = runtime
        self._rules = rules
        self._lock = threading.Lock()
        self.sent = 0

    def write(self, groups: list[AlertGroup]) -> None:
        with self._lock:
            for group in groups:
                self._notify(group)

    def _notify(self, group: AlertGroup) -> None:
        tier = self._rules.tiers.get(group.tier)  # type: ignore[call-overload]
        if tier is None:
            log.warning("alert group for tier without receivers tier=%s key=%s", group.tier,
                        group.key)
            return
        by_rule: dict[str, list[AlertEvent]] = defaultdict(list)
        for event in (*group.firing, *group.resolved):
            by_rule[event.rule].append(event)
        # A storm summary spans rules; each rule's part goes out once, under the storm's key.
        for rule_name, events in by_rule.items():
            rule = self._rules.rule(rule_name)
            key = group.key if not group.is_storm_summary else f"{group.key}/{rule_name}"
            kind = group_kind(group) if not group.is_storm_summary else (
                "resolve" if all(e.state == "resolved" for e in events) else "trigger")
            self._runtime.notify_events(events, receivers=tier.receivers, kind=kind,  # type: ignore[arg-type]
                                        metric=rule.metric, runbook=rule.runbook, key=key)
            self.sent += 1


class UsageRecorder:
    """The flow's records sink for the daily digest: requests, errors, cost and quality per
    (minute, model, prompt version), written cumulatively (the store replaces a window's row,
    so a replayed minute is not counted twice). Keeps the last `keep_minutes` in memory.
    `writer` is the cluster process id: processes assemble disjoint traces, so each writes
    its own rows and the digest adds them up."""

    def __init__(self, store: DigestStore, keep_minutes: int = 180, *, writer: int = 0,
                 categories: EvalCategories = DEFAULT_CATEGORIES) -> None:
        self._store = store
        self._keep_ns = keep_minutes * MINUTE_NS
        self._writer = writer
        self._categories = categories
        self._totals: dict[tuple[int, str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _slot(self, at_unix_ns: int, model: str | None, prompt: str | None) -> tuple[int, str, str]:
        return (at_unix_ns - at_unix_ns % MINUTE_NS, model or "", prompt or "")

    def _add_quality(self, totals: list[float], scores: tuple[EvalScore, ...]) -> None:
        for score in scores:
            if self._categories.category_of(score.name) == "quality":
                value = self._categories.value_of(score)
                if value is not None and math.isfinite(value):
                    totals[3] += value
                    totals[4] += 1

    def write(self, records: list[Record]) -> None:
        with self._lock:
            touched: set[tuple[int, str, str]] = set()
            for record in records:
                if isinstance(record, EvalResult):
                    slot = self._slot(record.at_unix_ns, record.model,
                                      record.context.prompt_template_version)
                    self._add_quality(self._totals.setdefault(slot, [0, 0, 0.0, 0.0, 0]),
                                      (record.score,))
                    touched.add(slot)
                    continue
                if not isinstance(record, LLMSpan) or record.kind not in ("llm", "embedding"):
                    continue
                slot = self._slot(record.end_unix_ns, record.model,
                                  record.context.prompt_template_version)
                totals = self._totals.setdefault(slot, [0, 0, 0.0, 0.0, 0])
                totals[0] += 1
                totals[1] += record.is_error
                totals[2] += record.cost_usd or 0.0
                self._add_quality(totals, record.evals)
                touched.add(slot)
            for slot in touched:
                minute, model, prompt = slot
                requests, errors, cost, quality_sum, quality_n = self._totals[slot]
                self._store.record_usage(UsageSample(
                    window_start=datetime.fromtimestamp(minute / 1e9, tz=UTC), model=model,
                    prompt_version=prompt, requests=int(requests), errors=int(errors),
                    cost_usd=cost, quality_sum=quality_sum, quality_count=int(quality_n),
                    writer=self._writer))
            if touched:
                newest = max(minute for minute, _, _ in touched)
                for slot in [s for s in self._totals if s[0] < newest - self._keep_ns]:
                    del self._totals[slot]
