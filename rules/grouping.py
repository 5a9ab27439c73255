"""The grouping stage: alert events batched into group notifications, with a storm breaker.

In: `AlertEvent`s (after inhibition and silences) of one receiver key, and event time. Out:
`AlertGroup`s, one per group and flush, or one storm summary when too many would go out.

Alertmanager semantics: alerts of one rule with equal `group_by` labels form a group; a new
group waits `group_wait` before its first notification, later changes (newly firing alerts,
resolves) go out at most every `group_interval`, and an unchanged firing group is re-sent
after `repeat_interval`. Where we differ:

- Resolves are sent exactly once, and only for alerts this group notified as firing; they are
  sent even when the alert is now silenced or inhibited (a silence must not leave a page open).
  An alert that fired and resolved before its group was first flushed is never notified.
- Suppressed alerts (`suppressed_by` set) stay in the group but are not listed as firing; one
  that becomes unsuppressed while firing counts as new and notifies at the next flush.
- Storm breaker (Alertmanager has none): when the notifications of the last `storm_window`
  plus those due now exceed `storm_threshold`, everything due is collapsed into ONE summary
  group (at most one per `group_interval`) until the rate falls back under the threshold.
- Lifecycle reminders (`is_repeat` events) refresh an alert's latest event but are not a
  change: `repeat_interval` here decides re-sends.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import zip_longest

from rules.records import AlertEvent, Labels

STATE_VERSION = 1
STORM_SAMPLE = 5
"""(rule, labels) pairs quoted in a storm summary."""


def _ns(duration: timedelta) -> int:
    return duration // timedelta(microseconds=1) * 1000


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """Grouping and storm settings of one receiver key (a tier or a receiver)."""

    group_by: tuple[str, ...] = ()
    """Label names that split a rule's alerts into groups; () is one group per rule."""
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    storm_threshold: int = 10
    """Most notifications per `storm_window` before they are collapsed into a summary."""
    storm_window: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if self.group_wait < timedelta(0):
            raise ValueError(f"GroupPolicy.group_wait is {self.group_wait}; expected >= 0")
        for name in ("group_interval", "repeat_interval", "storm_window"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"GroupPolicy.{name} is {getattr(self, name)}; expected > 0")
        if self.storm_threshold < 1:
            raise ValueError(f"GroupPolicy.storm_threshold is {self.storm_threshold}; "
                             "expected an integer >= 1")


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """One notification of one group (receiver-independent), or a storm summary."""

    key: str
    """Group key: rule{label="value",...}, or storm:<receiver key> for a summary."""
    rule: str
    """Empty for a storm summary (see `storm_counts`)."""
    tier: int
    labels: Labels
    """The group_by labels shared by the group's alerts."""
    firing: tuple[AlertEvent, ...]
    """Every firing, unsuppressed alert of the group (latest event each), by onset."""
    resolved: tuple[AlertEvent, ...]
    """Alerts resolved since the last notification that had been notified as firing."""
    new: tuple[str, ...]
    """Fingerprints in `firing` not notified before."""
    at_unix_ns: int
    first_at_unix_ns: int
    """When the group (or the storm) started."""
    is_update: bool
    """False for a group's first notification (or a storm's first summary)."""
    is_repeat: bool
    """Nothing changed: a reminder after repeat_interval."""
    is_storm_summary: bool = False
    storm_counts: tuple[tuple[str, int], ...] = field(default=())
    """(rule, firing alerts) collapsed into this summary."""
    storm_groups: int = 0
    """Group notifications collapsed into this summary."""
    storm_sample: tuple[tuple[str, Labels], ...] = field(default=())
    """A few (rule, labels) of the collapsed alerts, spread over rules."""


@dataclass(frozen=True, slots=True)
class GroupState:
    key: str
    rule: str
    tier: int
    labels: Labels
    first_at_unix_ns: int
    next_flush_at_unix_ns: int
    last_notified_at_unix_ns: int | None
    alerts: tuple[AlertEvent, ...]
    notified: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GrouperState:
    version: int
    key: str
    groups: tuple[GroupState, ...]
    recent: tuple[tuple[int, int], ...]
    storm_since_unix_ns: int | None
    last_summary_at_unix_ns: int | None
    dropped_resolves: int


@dataclass(slots=True)
class _Group:
    key: str
    rule: str
    tier: int
    labels: Labels
    first_at: int
    next_flush_at: int
    last_notified_at: int | None = None
    alerts: dict[str, AlertEvent] = field(default_factory=dict)
    """Latest event per fingerprint: firing (maybe suppressed) or resolved, not yet sent."""
    notified: set[str] = field(default_factory=set)
    """Fingerprints notified as firing and not yet notified as resolved."""

    def prepare(self, now: int, repeat_ns: int) -> AlertGroup | None:
        """The notification due at `now`, if any (state is not changed)."""
        events = self.alerts.values()
        firing = sorted((e for e in events if e.state == "firing" and not e.suppressed_by),
                        key=lambda e: (e.started_at_unix_ns, e.fingerprint))
        resolved = sorted((e for e in events
                           if e.state == "resolved" and e.fingerprint in self.notified),
                          key=lambda e: (e.at_unix_ns, e.fingerprint))
        new = tuple(e.fingerprint for e in firing if e.fingerprint not in self.notified)
        if self.last_notified_at is None:
            is_due = bool(firing)
            is_repeat = False
        else:
            is_changed = bool(new or resolved)
            is_repeat = not is_changed and bool(firing) \
                and now - self.last_notified_at >= repeat_ns
            is_due = is_changed or is_repeat
        if not is_due:
            return None
        return AlertGroup(
            key=self.key, rule=self.rule, tier=self.tier, labels=self.labels,
            firing=tuple(firing), resolved=tuple(resolved), new=new, at_unix_ns=now,
            first_at_unix_ns=self.first_at, is_update=self.last_notified_at is not None,
            is_repeat=is_repeat)

    def commit(self, now: int, interval_ns: int, sent: AlertGroup | None) -> None:
        """After a flush: remember what was sent, forget resolved alerts, schedule the next."""
        if sent is not None:
            self.last_notified_at = now
            self.notified.update(e.fingerprint for e in sent.firing)
        for fp in [fp for fp, e in self.alerts.items() if e.state == "resolved"]:
            del self.alerts[fp]
            self.notified.discard(fp)
        self.next_flush_at = now + interval_ns

    def to_state(self) -> GroupState:
        return GroupState(self.key, self.rule, self.tier, self.labels, self.first_at,
                          self.next_flush_at, self.last_notified_at, tuple(self.alerts.values()),
                          tuple(sorted(self.notified)))

    @classmethod
    def from_state(cls, state: GroupState) -> _Group:
        return cls(state.key, state.rule, state.tier, state.labels, state.first_at_unix_ns,
                   state.next_flush_at_unix_ns, state.last_notified_at_unix_ns,
                   {e.fingerprint: e for e in state.alerts}, set(state.notified))


def group_key(rule: str, labels: Labels) -> str:
    """Readable, unique key of a rule's group: rule{name="value",...}."""
    inner = ",".join(f"{name}={json.dumps(value)}" for name, value in labels)
    return f"{rule}{{{inner}}}"


class Grouper:
    """Groups of one receiver key (a tier or a receiver) and its storm breaker."""

    __slots__ = ("_groups", "_last_summary_at", "_policy", "_recent", "_storm_since",
                 "dropped_resolves", "key")

    def __init__(self, policy: GroupPolicy, key: str = "") -> None:
        self._policy = policy
        self.key = key
        self._groups: dict[str, _Group] = {}
        self._recent: list[tuple[int, int]] = []
        """(flush time, notifications due then), kept for `storm_window`."""
        self._storm_since: int | None = None
        self._last_summary_at: int | None = None
        self.dropped_resolves = 0
        """Resolves of alerts no group here knew (never notified by this grouper)."""

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def is_storm(self) -> bool:
        return self._storm_since is not None

    def add(self, event: AlertEvent, now_unix_ns: int) -> None:
        """Put an alert event in its group (a new group flushes `group_wait` after `now`)."""
        labels = tuple((name, value) for name, value in event.labels
                       if name in self._policy.group_by)
        key = group_key(event.rule, labels)
        group = self._groups.get(key)
        if group is None:
            if event.state == "resolved":
                self.dropped_resolves += 1
            if event.state != "firing":
                return
            group = _Group(key, event.rule, event.tier, labels, now_unix_ns,
                           now_unix_ns + _ns(self._policy.group_wait))
            self._groups[key] = group
        if event.state == "resolved" and event.fingerprint not in group.alerts \
                and event.fingerprint not in group.notified:
            self.dropped_resolves += 1
            return
        if event.state in ("firing", "resolved"):
            group.alerts[event.fingerprint] = event
            group.tier = event.tier

    def next_flush_at_unix_ns(self) -> int | None:
        """Earliest event time at which `flush` may send something."""
        return min((g.next_flush_at for g in self._groups.values()), default=None)

    def flush(self, now_unix_ns: int) -> list[AlertGroup]:
        """Notifications due at event time `now_unix_ns`, by group key (or one storm summary)."""
        now = now_unix_ns
        policy = self._policy
        interval_ns = _ns(policy.group_interval)
        due = sorted((g for g in self._groups.values() if g.next_flush_at <= now),
                     key=lambda g: g.key)
        pending: list[tuple[_Group, AlertGroup]] = []
        for group in due:
            note = group.prepare(now, _ns(policy.repeat_interval))
            if note is None:
                self._finish(group, now, interval_ns, None)
            else:
                pending.append((group, note))
        window_ns = _ns(policy.storm_window)
        self._recent = [(t, n) for t, n in self._recent if now - t < window_ns]
        is_storm = sum(n for _, n in self._recent) + len(pending) > policy.storm_threshold
        if not is_storm:
            self._storm_since = None
        elif self._storm_since is not None and self._last_summary_at is not None \
                and now - self._last_summary_at < interval_ns:
            return []  # one summary per group_interval: the due groups wait for the next
        if not pending:
            return []
        self._recent.append((now, len(pending)))
        for group, note in pending:
            self._finish(group, now, interval_ns, note)
        if not is_storm:
            return [note for _, note in pending]
        self._last_summary_at = now
        return [self._summarize([note for _, note in pending], now)]

    def _finish(self, group: _Group, now: int, interval_ns: int,
                sent: AlertGroup | None) -> None:
        group.commit(now, interval_ns, sent)
        if not group.alerts:
            del self._groups[group.key]

    def _summarize(self, notes: list[AlertGroup], now: int) -> AlertGroup:
        is_update = self._storm_since is not None
        if self._storm_since is None:
            self._storm_since = now
        firing = tuple(e for n in notes for e in n.firing)
        counts = Counter(e.rule for e in firing)
        by_rule: dict[str, list[Labels]] = {}
        for rule, labels in sorted({(e.rule, e.labels) for e in firing}):
            by_rule.setdefault(rule, []).append(labels)
        # Round robin over rules, so the sample shows as many rules as it can.
        sample = [(rule, labels) for row in zip_longest(*by_rule.values())
                  for rule, labels in zip(by_rule, row, strict=True) if labels is not None]
        return AlertGroup(
            key=f"storm:{self.key}", rule="", tier=min(n.tier for n in notes), labels=(),
            firing=firing, resolved=tuple(e for n in notes for e in n.resolved),
            new=tuple(fp for n in notes for fp in n.new), at_unix_ns=now,
            first_at_unix_ns=self._storm_since, is_update=is_update, is_repeat=False,
            is_storm_summary=True, storm_counts=tuple(sorted(counts.items())),
            storm_groups=len(notes), storm_sample=tuple(sample[:STORM_SAMPLE]))

    def snapshot(self) -> GrouperState:
        return GrouperState(STATE_VERSION, self.key,
                            tuple(g.to_state() for g in self._groups.values()),
                            tuple(self._recent), self._storm_since, self._last_summary_at,
                            self.dropped_resolves)

    @classmethod
    def restore(cls, state: GrouperState, policy: GroupPolicy) -> Grouper:
        if state.version != STATE_VERSION:
            raise ValueError(f"GrouperState version {state.version} is not supported; "
                             f"expected {STATE_VERSION}")
        grouper = cls(policy, state.key)
        grouper._groups = {g.key: _Group.from_state(g) for g in state.groups}
        grouper._recent = list(state.recent)
        grouper._storm_since = state.storm_since_unix_ns
        grouper._last_summary_at = state.last_summary_at_unix_ns
        grouper.dropped_resolves = state.dropped_resolves
        return grouper
