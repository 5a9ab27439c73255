"""From the flow's alert groups to notifications: which receivers, which kind, which key.

In: `AlertGroup`s (grouping has decided that something must be said). Out: notifications
handed to the notify runtime's durable outbox, one per receiver of the group's tier.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

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
