"""The inhibition stage: marks alert events muted by a firing alert or by a silence.

In: `AlertEvent`s from the lifecycle (every shard), and event time for `tick`. Out: the same
events with `suppressed_by` set (inhibiting fingerprints, then the silence id), plus re-sent
firing events whose suppression changed (lifted or imposed) while they kept firing.

Alertmanager semantics, with these choices:

- Events are never dropped: the grouping stage skips suppressed alerts and audit or digest can
  still show them. A re-sent event has `state == previous == "firing"`, `is_repeat=False`.
- Sources are firing alerts even when themselves suppressed (Alertmanager alike); an alert
  never inhibits itself.
- `equal` labels must be present on both alerts with the same value (Alertmanager also matches
  a label missing on both sides). `equal=None` means the labels the target and the source
  share, at least one: a series alert inhibits alerts on the same series, and a provider-wide
  alert (labels just `provider`) inhibits every alert that has the same provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from rules.records import AlertEvent, Labels

STATE_VERSION = 1

IsSilenced = Callable[[str, Labels, datetime], str | None]
"""(rule, labels, at) -> the id of a silence matching the alert at that instant, or None."""


@dataclass(frozen=True, slots=True)
class AlertMatcher:
    """Which alerts a side of an inhibit rule covers; an empty field matches anything."""

    rules: tuple[str, ...] = ()
    tiers: tuple[int, ...] = ()
    labels: Labels = ()
    """Each (name, value) must be on the alert."""

    def matches(self, event: AlertEvent) -> bool:
        if self.rules and event.rule not in self.rules:
            return False
        if self.tiers and event.tier not in self.tiers:
            return False
        return all(pair in event.labels for pair in self.labels)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """A firing `source` alert suppresses `target` alerts that agree on `equal` labels."""

    source: AlertMatcher
    target: AlertMatcher
    equal: tuple[str, ...] | None = None
    """Label names whose values must agree; None: every label both alerts have (>= 1)."""

    def is_inhibiting(self, source: AlertEvent, target: AlertEvent) -> bool:
        if source.fingerprint == target.fingerprint:
            return False
        if not (self.source.matches(source) and self.target.matches(target)):
            return False
        source_labels, target_labels = dict(source.labels), dict(target.labels)
        if self.equal is None:
            shared = source_labels.keys() & target_labels.keys()
            return bool(shared) and all(source_labels[n] == target_labels[n] for n in shared)
        return all(name in source_labels and source_labels[name] == target_labels.get(name)
                   for name in self.equal)


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(source=AlertMatcher(tiers=(1,)), target=AlertMatcher(tiers=(2, 3))),
)
"""A firing tier-1 alert suppresses tier-2/3 alerts of the same series (or a narrower one)."""


@dataclass(frozen=True, slots=True)
class InhibitorState:
    version: int
    firing: tuple[AlertEvent, ...]


def _at(unix_ns: int) -> datetime:
    return datetime.fromtimestamp(unix_ns / 1e9, tz=UTC)


_Schema = frozenset[str]
"""The label names of an alert (one per rule group_by, so there are few)."""


class _LabelIndex:
    """Alerts by label schema, with projections on label names built on first use, so finding
    the alerts that agree with one on `equal` labels costs the matches, not every alert."""

    __slots__ = ("_alerts", "_projections")

    def __init__(self) -> None:
        self._alerts: dict[_Schema, dict[str, AlertEvent]] = {}
        self._projections: dict[_Schema, dict[tuple[str, ...], dict[tuple[str, ...], set[str]]]] \
            = {}

    def __len__(self) -> int:
        return sum(len(alerts) for alerts in self._alerts.values())

    def __iter__(self) -> Iterator[AlertEvent]:
        for alerts in self._alerts.values():
            yield from alerts.values()

    def get(self, event: AlertEvent) -> AlertEvent | None:
        return self._alerts.get(_schema(event), {}).get(event.fingerprint)

    def put(self, event: AlertEvent) -> None:
        schema, fp = _schema(event), event.fingerprint
        alerts = self._alerts.setdefault(schema, {})
        if fp not in alerts:
            labels = dict(event.labels)
            for names, projection in self._projections.get(schema, {}).items():
                projection.setdefault(tuple(labels[n] for n in names), set()).add(fp)
        alerts[fp] = event

    def pop(self, event: AlertEvent) -> AlertEvent | None:
        schema, fp = _schema(event), event.fingerprint
        found = self._alerts.get(schema, {}).pop(fp, None)
        if found is not None:
            labels = dict(event.labels)
            for names, projection in self._projections.get(schema, {}).items():
                projection.get(tuple(labels[n] for n in names), set()).discard(fp)
        return found

    def agreeing(self, labels: Labels, equal: tuple[str, ...] | None) -> Iterator[AlertEvent]:
        """Alerts that have every `equal` label (None: every shared label, at least one) with
        the same value as `labels`."""
        values = dict(labels)
        for schema, alerts in self._alerts.items():
            names = tuple(sorted(schema & values.keys() if equal is None else equal))
            if not names or not schema.issuperset(names) or not values.keys() >= set(names):
                continue
            projection = self._projection(schema, names)
            for fp in projection.get(tuple(values[n] for n in names), ()):
                yield alerts[fp]

    def _projection(self, schema: _Schema,
                    names: tuple[str, ...]) -> dict[tuple[str, ...], set[str]]:
        by_names = self._projections.setdefault(schema, {})
        projection = by_names.get(names)
        if projection is None:
            projection = by_names[names] = {}
            for fp, event in self._alerts[schema].items():
                labels = dict(event.labels)
                projection.setdefault(tuple(labels[n] for n in names), set()).add(fp)
        return projection


def _schema(event: AlertEvent) -> _Schema:
    return frozenset(name for name, _ in event.labels)


class Inhibitor:
    """Every firing alert (all tiers, all shards), to decide who mutes whom."""

    __slots__ = ("_firing", "_is_silenced", "_rules", "_sources")

    def __init__(self, rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES,
                 is_silenced: IsSilenced | None = None) -> None:
        self._rules = rules
        self._is_silenced = is_silenced
        self._firing = _LabelIndex()
        """Latest firing event per fingerprint, with its current `suppressed_by`."""
        self._sources = _LabelIndex()
        """The firing alerts that match some rule's source side."""

    def __len__(self) -> int:
        return len(self._firing)

    def suppressed_by(self, event: AlertEvent) -> tuple[str, ...]:
        """Fingerprints of the firing alerts that inhibit `event`, sorted."""
        found = {source.fingerprint
                 for rule in self._rules if rule.target.matches(event)
                 for source in self._sources.agreeing(event.labels, rule.equal)
                 if rule.is_inhibiting(source, event)}
        return tuple(sorted(found))

    def _suppression(self, event: AlertEvent, at_unix_ns: int) -> tuple[str, ...]:
        inhibitors = self.suppressed_by(event)
        if self._is_silenced is None:
            return inhibitors
        silence = self._is_silenced(event.rule, event.labels, _at(at_unix_ns))
        return (*inhibitors, silence) if silence else inhibitors

    def _is_source(self, event: AlertEvent) -> bool:
        return any(rule.source.matches(event) for rule in self._rules)

    def update(self, event: AlertEvent) -> list[AlertEvent]:
        """The event with `suppressed_by` set, then firing alerts whose suppression it changed.

        Resolved events get `suppressed_by` too (for audit); grouping still sends the resolve
        of an alert it had notified.
        """
        fp = event.fingerprint
        at = event.at_unix_ns
        if event.state == "firing":
            is_new_source = self._sources.get(event) is None and self._is_source(event)
            marked = replace(event, suppressed_by=self._suppression(event, at))
            self._firing.put(marked)
            if is_new_source or self._sources.get(event) is not None:
                self._sources.put(marked)
            if not is_new_source:
                return [marked]
            muted = {e.fingerprint: e for rule in self._rules if rule.source.matches(marked)
                     for e in self._firing.agreeing(marked.labels, rule.equal)
                     if fp not in e.suppressed_by and rule.is_inhibiting(marked, e)}
            return [marked, *self._recheck(at, sorted(muted.values(), key=_by_fingerprint))]
        if event.state != "resolved":
            return [event]  # the lifecycle sends only firing and resolved events
        self._firing.pop(event)
        was_source = self._sources.pop(event) is not None
        marked = replace(event, suppressed_by=self._suppression(event, at))
        if not was_source:
            return [marked]
        lifted = {e.fingerprint: e for rule in self._rules
                  for e in self._firing.agreeing(event.labels, rule.equal)
                  if fp in e.suppressed_by}
        return [marked, *self._recheck(at, sorted(lifted.values(), key=_by_fingerprint))]

    def tick(self, now_unix_ns: int) -> list[AlertEvent]:
        """Re-check every firing alert at event time `now_unix_ns`: silences start and expire
        by time (and after a restore with other rules, inhibition may differ)."""
        return self._recheck(now_unix_ns, sorted(self._firing, key=_by_fingerprint))

    def _recheck(self, at_unix_ns: int, alerts: list[AlertEvent]) -> list[AlertEvent]:
        changed: list[AlertEvent] = []
        for current in alerts:
            suppression = self._suppression(current, at_unix_ns)
            if suppression == current.suppressed_by:
                continue
            # A status change of an alert still firing: re-sent so grouping notifies a lifted
            # alert (or stops listing a muted one). Its time never goes backwards.
            updated = replace(current, suppressed_by=suppression, previous="firing",
                              is_repeat=False, at_unix_ns=max(current.at_unix_ns, at_unix_ns))
            self._firing.put(updated)
            if self._sources.get(updated) is not None:
                self._sources.put(updated)
            changed.append(updated)
        return changed

    def snapshot(self) -> InhibitorState:
        return InhibitorState(STATE_VERSION, tuple(self._firing))

    @classmethod
    def restore(cls, state: InhibitorState,
                rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES,
                is_silenced: IsSilenced | None = None) -> Inhibitor:
        if state.version != STATE_VERSION:
            raise ValueError(f"InhibitorState version {state.version} is not supported; "
                             f"expected {STATE_VERSION}")
        inhibitor = cls(rules, is_silenced)
        for event in state.firing:
            inhibitor._firing.put(event)
            if inhibitor._is_source(event):
                inhibitor._sources.put(event)
        return inhibitor


def _by_fingerprint(event: AlertEvent) -> str:
    return event.fingerprint
