"""The alert lifecycle stage: inactive -> pending -> firing -> resolved per alert instance.

In: `Evaluation`s of the rules on one shard of series, and event time for `tick`. Out:
`AlertEvent`s (firing, `is_repeat` reminders, resolved), each carrying its evaluation.

Semantics, and where they differ from Prometheus + Alertmanager:

- `for`: a breach opens an incident (pending, onset `started_at`); it fires at the first
  breaching evaluation at least `for` after the onset (Prometheus alike). A decisive clear
  while pending drops it silently: it never fired, so nobody hears of it.
- `keep_firing_for`: a firing alert resolves only after the condition has been observed clear
  for `keep_firing_for` (Prometheus measures from the last breach, we from the first clear
  evaluation); a breach in between cancels the countdown with no new event (anti-flapping).
- Gated evaluations (too few samples), and clears without a value (no data), neither breach
  nor recover: they cannot open, fire, keep or resolve an alert.
- Missing data: Prometheus resolves an alert the moment its series leaves the query result,
  and Alertmanager resolves one it stops hearing about after `resolve_timeout`, both without
  saying why. Here a firing alert with no decisive evaluation keeps firing until
  `resolve_timeout`, then resolves with an evaluation whose `detail` says there was no data
  (never a silent drop and never a stuck alert); a pending one is dropped without an event.
- Repeat: while firing, a reminder every `repeat_interval` on the grid fired_at + k * interval
  (0 disables; set it to 0 when the grouping stage does repeats).
- Restarts: `snapshot()` holds every open instance, so after `restore` a still-breaching
  firing alert stays quiet (no double page) and a countdown to resolve still completes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from rules.records import AlertEvent, AlertState, Evaluation

STATE_VERSION = 1


def _ns(duration: timedelta) -> int:
    return duration // timedelta(microseconds=1) * 1000


def _iso(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns / 1e9, tz=UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """How one rule's instances move between states; durations in event time."""

    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    repeat_interval: timedelta = timedelta(0)
    """0 disables lifecycle reminders."""
    resolve_timeout: timedelta = timedelta(minutes=15)
    """A firing alert with no decisive evaluation for this long resolves (reason in detail)."""

    def __post_init__(self) -> None:
        for name in ("for_", "keep_firing_for", "repeat_interval"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"LifecyclePolicy.{name} is {getattr(self, name)}; "
                                 "expected a duration >= 0")
        if self.resolve_timeout <= timedelta(0):
            raise ValueError(f"LifecyclePolicy.resolve_timeout is {self.resolve_timeout}; "
                             "expected a duration > 0 (a firing alert without data must end)")


@dataclass(frozen=True, slots=True)
class InstanceState:
    """One alert instance (rule + series labels); plain data, replaced on every change."""

    fingerprint: str
    state: AlertState
    policy: LifecyclePolicy
    """The policy of the latest evaluation; `tick` uses it when no evaluations arrive."""
    evaluation: Evaluation
    """The latest evaluation seen (rule, tier and labels come from it)."""
    started_at_unix_ns: int
    """Onset of the current (or last) incident."""
    last_at_unix_ns: int
    """Latest event time processed; older evaluations are ignored as stale."""
    decided_at_unix_ns: int
    """Latest decisive (not gated, not no-data) evaluation, for `resolve_timeout`."""
    fired_at_unix_ns: int | None = None
    clear_since_unix_ns: int | None = None
    """First clear evaluation of the running keep_firing_for countdown, if any."""
    next_repeat_at_unix_ns: int | None = None
    ended_at_unix_ns: int | None = None
    """When it became inactive or resolved (it is forgotten `retain` later)."""


@dataclass(frozen=True, slots=True)
class LifecycleState:
    version: int
    instances: tuple[InstanceState, ...]
    stale: int


def _event(inst: InstanceState, state: AlertState, previous: AlertState, at_unix_ns: int,
           evaluation: Evaluation, *, is_repeat: bool = False) -> AlertEvent:
    return AlertEvent(
        fingerprint=inst.fingerprint, rule=evaluation.rule, tier=evaluation.tier,
        labels=evaluation.labels, state=state, previous=previous, at_unix_ns=at_unix_ns,
        started_at_unix_ns=inst.started_at_unix_ns, evaluation=evaluation, is_repeat=is_repeat)


def _is_decisive(evaluation: Evaluation) -> bool:
    """A breach or a recovery; gated windows and clears without a value are neither."""
    return not evaluation.is_gated and (evaluation.is_breach or evaluation.value is not None)


class AlertLifecycle:
    """Lifecycle of every alert instance on one shard, keyed by fingerprint.

    Open (pending/firing) instances are kept until they end; inactive/resolved ones are kept
    `retain` longer (to ignore stale evaluations) and then dropped by `tick`.
    """

    __slots__ = ("_instances", "_retain_ns", "stale")

    def __init__(self, retain: timedelta = timedelta(hours=1)) -> None:
        if retain < timedelta(0):
            raise ValueError(f"AlertLifecycle retain is {retain}; expected a duration >= 0")
        self._retain_ns = _ns(retain)
        self._instances: dict[str, InstanceState] = {}
        self.stale = 0
        """Evaluations ignored because they were older than the instance's latest time."""

    def __len__(self) -> int:
        return len(self._instances)

    def counts(self) -> Counter[tuple[str, int]]:
        """Instances by (state, tier), for the self-metrics."""
        return Counter((inst.state, inst.evaluation.tier) for inst in self._instances.values())

    def state_of(self, fingerprint: str) -> AlertState:
        inst = self._instances.get(fingerprint)
        return "inactive" if inst is None else inst.state

    def observe(self, evaluation: Evaluation, policy: LifecyclePolicy) -> list[AlertEvent]:
        """Advance the evaluation's instance to its event time; the events it causes."""
        now = evaluation.at_unix_ns
        fp = evaluation.fingerprint
        inst = self._instances.get(fp)
        if inst is not None and now < inst.last_at_unix_ns:
            self.stale += 1
            return []
        is_decisive = _is_decisive(evaluation)
        is_breach = is_decisive and evaluation.is_breach
        if inst is None or inst.state in ("inactive", "resolved"):
            if not is_breach:
                if inst is not None:
                    self._instances[fp] = replace(inst, last_at_unix_ns=now)
                return []
            inst = InstanceState(fingerprint=fp, state="pending", policy=policy,
                                 evaluation=evaluation, started_at_unix_ns=now,
                                 last_at_unix_ns=now, decided_at_unix_ns=now)
        else:
            inst = replace(inst, policy=policy, evaluation=evaluation, last_at_unix_ns=now,
                           decided_at_unix_ns=now if is_decisive else inst.decided_at_unix_ns)
        inst, events = self._advance(inst, evaluation, now, is_breach=is_breach,
                                     is_clear=is_decisive and not is_breach)
        self._instances[fp] = inst
        return events

    def _advance(self, inst: InstanceState, evaluation: Evaluation, now: int, *,
                 is_breach: bool, is_clear: bool) -> tuple[InstanceState, list[AlertEvent]]:
        policy = inst.policy
        if inst.state == "pending":
            if is_clear:
                return replace(inst, state="inactive", ended_at_unix_ns=now), []
            if is_breach and now - inst.started_at_unix_ns >= _ns(policy.for_):
                previous: AlertState = "pending" if now > inst.started_at_unix_ns else "inactive"
                repeat_ns = _ns(policy.repeat_interval)
                inst = replace(inst, state="firing", fired_at_unix_ns=now,
                               next_repeat_at_unix_ns=now + repeat_ns if repeat_ns else None)
                return inst, [_event(inst, "firing", previous, now, evaluation)]
            return inst, []
        # firing
        if is_breach and inst.clear_since_unix_ns is not None:
            inst = replace(inst, clear_since_unix_ns=None)  # flapped back: countdown cancelled
        elif is_clear:
            clear_since = inst.clear_since_unix_ns if inst.clear_since_unix_ns is not None else now
            if now - clear_since >= _ns(policy.keep_firing_for):
                return self._resolve(inst, now, evaluation)
            inst = replace(inst, clear_since_unix_ns=clear_since)
        return self._repeat(inst, now, evaluation)

    @staticmethod
    def _resolve(inst: InstanceState, now: int,
                 evaluation: Evaluation) -> tuple[InstanceState, list[AlertEvent]]:
        inst = replace(inst, state="resolved", clear_since_unix_ns=None,
                       next_repeat_at_unix_ns=None, ended_at_unix_ns=now, last_at_unix_ns=now)
        return inst, [_event(inst, "resolved", "firing", now, evaluation)]

    @staticmethod
    def _repeat(inst: InstanceState, now: int,
                evaluation: Evaluation) -> tuple[InstanceState, list[AlertEvent]]:
        repeat_ns = _ns(inst.policy.repeat_interval)
        fired = inst.fired_at_unix_ns
        if not repeat_ns or fired is None:  # reminders off (perhaps since a reload)
            if inst.next_repeat_at_unix_ns is None:
                return inst, []
            return replace(inst, next_repeat_at_unix_ns=None), []
        due = inst.next_repeat_at_unix_ns
        if due is None:  # switched on by a reload while firing
            due = fired + repeat_ns
        if now < due:
            if due == inst.next_repeat_at_unix_ns:
                return inst, []
            return replace(inst, next_repeat_at_unix_ns=due), []
        # The next point of the fired_at + k * interval grid after now: one reminder per gap.
        following = fired + ((now - fired) // repeat_ns + 1) * repeat_ns
        inst = replace(inst, next_repeat_at_unix_ns=following, last_at_unix_ns=now)
        return inst, [_event(inst, "firing", "firing", now, evaluation, is_repeat=True)]

    def tick(self, now_unix_ns: int) -> list[AlertEvent]:
        """Time-driven transitions at event time `now_unix_ns` (call it with the evaluation
        watermark: every evaluation up to it has been observed).

        Resolves firing alerts whose keep_firing_for countdown ran out or that had no decisive
        evaluation for `resolve_timeout`, sends due reminders, drops pending instances without
        data for `resolve_timeout`, and forgets ended instances after `retain`.
        """
        now = now_unix_ns
        events: list[AlertEvent] = []
        for fp in list(self._instances):
            inst = self._instances[fp]
            if now < inst.last_at_unix_ns:
                continue
            timeout_ns = _ns(inst.policy.resolve_timeout)
            if inst.state in ("inactive", "resolved"):
                ended = inst.ended_at_unix_ns if inst.ended_at_unix_ns is not None else now
                if now - ended >= self._retain_ns:
                    del self._instances[fp]
                continue
            if inst.state == "pending":
                if now - inst.decided_at_unix_ns >= timeout_ns:
                    self._instances[fp] = replace(inst, state="inactive", ended_at_unix_ns=now,
                                                  last_at_unix_ns=now)
                continue
            new, emitted = self._tick_firing(inst, now, timeout_ns)
            self._instances[fp] = new
            events.extend(emitted)
        return events

    def _tick_firing(self, inst: InstanceState, now: int,
                     timeout_ns: int) -> tuple[InstanceState, list[AlertEvent]]:
        last = inst.evaluation
        clear_since = inst.clear_since_unix_ns
        if clear_since is not None and now - clear_since >= _ns(inst.policy.keep_firing_for):
            detail = (f"resolved: clear since {_iso(clear_since)}, keep_firing_for "
                      f"{inst.policy.keep_firing_for} elapsed with no evaluation since")
            return self._resolve(inst, now, replace(last, detail=_join(detail, last.detail)))
        if now - inst.decided_at_unix_ns >= timeout_ns:
            detail = (f"resolved without data: no decisive evaluation since "
                      f"{_iso(inst.decided_at_unix_ns)} (resolve_timeout "
                      f"{inst.policy.resolve_timeout}); the series stopped sending or only "
                      f"had gated windows; last value {last.value}")
            no_data = replace(last, at_unix_ns=now, is_breach=False, value=None, is_gated=False,
                              samples=0, exemplar_trace_ids=(), changed=(), detail=detail)
            return self._resolve(inst, now, no_data)
        return self._repeat(inst, now, last)

    def next_tick_at_unix_ns(self) -> int | None:
        """Earliest event time at which `tick` would change something, if any."""
        due: list[int] = []
        for inst in self._instances.values():
            if inst.state in ("inactive", "resolved"):
                if inst.ended_at_unix_ns is not None:
                    due.append(inst.ended_at_unix_ns + self._retain_ns)
                continue
            due.append(inst.decided_at_unix_ns + _ns(inst.policy.resolve_timeout))
            if inst.clear_since_unix_ns is not None:
                due.append(inst.clear_since_unix_ns + _ns(inst.policy.keep_firing_for))
            if inst.next_repeat_at_unix_ns is not None:
                due.append(inst.next_repeat_at_unix_ns)
        return min(due, default=None)

    def snapshot(self) -> LifecycleState:
        return LifecycleState(STATE_VERSION, tuple(self._instances.values()), self.stale)

    @classmethod
    def restore(cls, state: LifecycleState,
                retain: timedelta = timedelta(hours=1)) -> AlertLifecycle:
        if state.version != STATE_VERSION:
            raise ValueError(f"LifecycleState version {state.version} is not supported; "
                             f"expected {STATE_VERSION}")
        lifecycle = cls(retain)
        lifecycle._instances = {inst.fingerprint: inst for inst in state.instances}
        lifecycle.stale = state.stale
        return lifecycle


def _join(reason: str, detail: str) -> str:
    return f"{reason}; {detail}" if detail else reason
