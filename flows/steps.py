"""Thin Bytewax adapters around the pure stages: each keeps one stage's state per key, reads the
wall clock only to drive idle timers, and snapshots plain Python objects for recovery.

- `AssemblyLogic` (key: trace shard): trace assembly, clocked by the source watermark.
- `WindowLogic` (key: series shard): windows -> rule evaluation -> alert lifecycle.
- `AlertRoutingLogic` (key: "alerts"): inhibition and silences, then grouping per tier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from bytewax.operators import StatefulBatchLogic

from flows import instruments, wire
from ingest.assembly import Record, TraceAssembler
from metrics.bucket import MINUTE_NS
from metrics.partial import Partial
from metrics.shard import ShardWindows
from metrics.watermark import Watermark
from metrics.windows import ClosedMinute
from rules.config import RulesConfig
from rules.evaluate import RuleEvaluator
from rules.grouping import AlertGroup, Grouper, GroupPolicy
from rules.inhibition import Inhibitor
from rules.lifecycle import AlertLifecycle, LifecyclePolicy
from rules.records import AlertEvent

IDLE_TICK = timedelta(seconds=5)
"""How often an idle step wakes up to let the watermark advance with the wall clock."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Source partition `partition` has been read up to event time `max_event_unix_ns`."""

    partition: str
    max_event_unix_ns: int
    wall_unix_ns: int
    shard: str = ""
    """The step key this copy is addressed to (steps learn their own key from it)."""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """One step key's share of a batch: its items (records, or partials), then the progress
    that follows them; the same order as if each had been sent on its own.

    The flow exchanges one `Batch` per (key, batch) instead of one item per span: Bytewax
    routes, calls Python for and, across processes, pickles every item. A batch pickles as its
    `flows.wire` form, encoded once and kept (timely pickles a message twice: for its length,
    then for its bytes).
    """

    shard: str
    """The step key it is addressed to (steps learn their own key from it)."""
    items: Sequence[T]
    progress: tuple[Progress, ...] = ()
    _wire: bytes | None = field(default=None, init=False, compare=False, repr=False)
    """`wire.encode(items)`, once pickled (a batch is not changed after it is sent)."""

    def __reduce__(self) -> tuple[Callable[..., Batch[Any]], tuple[Any, ...]]:
        encoded = self._wire
        if encoded is None:
            encoded = wire.encode(self.items)
            object.__setattr__(self, "_wire", encoded)
        progress = tuple((p.partition, p.max_event_unix_ns, p.wall_unix_ns, p.shard)
                         for p in self.progress)
        return (_batch_from_wire, (self.shard, encoded, progress))


def _batch_from_wire(shard: str, encoded: bytes,
                     progress: tuple[tuple[str, int, int, str], ...]) -> Batch[Any]:
    return Batch(shard, wire.decode(encoded), tuple(Progress(*p) for p in progress))


@dataclass(frozen=True, slots=True)
class Tick:
    """Event-time progress of one window shard, for time-driven alert routing."""

    shard: str
    now_unix_ns: int


@dataclass(frozen=True, slots=True)
class WatermarkPolicy:
    partitions: tuple[str, ...]
    idle_timeout: timedelta
    allowed_lateness: timedelta


def _wall_ns() -> int:
    return time.time_ns()


def new_watermark(policy: WatermarkPolicy, lateness: timedelta) -> Watermark:
    return Watermark(policy.partitions, allowed_lateness=lateness,
                     idle_timeout=policy.idle_timeout, started_wall_unix_ns=_wall_ns())


class SourceClock:
    """Wall time for the watermark's idle timeouts, as a step sees it: the newest read time of
    the progress it received, plus the time since it last received input.

    Comparing progress read times with the step's own clock would take pipeline lag (a backlog
    queued between decode and this step) for idle source partitions, leave them out and close
    their minutes before their records arrive. Time still passes while the step receives
    nothing, so minutes keep closing when traffic stops.
    """

    __slots__ = ("_input_wall", "_read_wall")

    def __init__(self) -> None:
        self._read_wall: int | None = None
        self._input_wall = _wall_ns()

    def received(self) -> None:
        self._input_wall = _wall_ns()

    def read_at(self, wall_unix_ns: int) -> None:
        if self._read_wall is None or wall_unix_ns > self._read_wall:
            self._read_wall = wall_unix_ns

    @property
    def read(self) -> int:
        """While handling input: the newest read time seen (the wall clock before any)."""
        return _wall_ns() if self._read_wall is None else self._read_wall

    def now(self) -> int:
        """Without input (idle timers)."""
        if self._read_wall is None:
            return _wall_ns()
        return self._read_wall + max(0, _wall_ns() - self._input_wall)


def forwarded(partition: str, assembly_shard: str) -> str:
    """Name under which assembly shard `assembly_shard` forwards `partition`'s progress."""
    return f"{partition}@{assembly_shard}"


# --- trace assembly ---------------------------------------------------------------------------


@dataclass(slots=True)
class SourceProgress:
    """What one assembly shard knows of a source partition, and what it forwarded of it."""

    max_event_unix_ns: int
    read_wall_unix_ns: int
    forwarded_unix_ns: int | None = None


@dataclass(slots=True)
class AssemblyState:
    assembler: TraceAssembler
    watermark: Watermark
    shard: str = ""
    sources: dict[str, SourceProgress] = field(default_factory=dict)


class AssemblyLogic(StatefulBatchLogic[Batch[Record], Batch[Record], AssemblyState]):
    """Trace assembly for one shard; stream time is the watermark over all source partitions.

    Progress is forwarded downstream (as `forwarded(partition, shard)`) after the records
    released with it, so the window stage, whose watermark is the minimum over every assembly
    shard's forwarded progress, never sees progress ahead of records still in flight. It is
    also capped at the assembler's hold limit, so records still held here (waiting for their
    root) can never become late there; once they are released the rest follows.

    Input is `Batch`es, in order; each call's output is at most one `Batch` (the released
    records, then the forwarded progress).
    """

    def __init__(self, state: AssemblyState) -> None:
        self._state = state
        self._reported_open = 0
        self._clock = SourceClock()

    def on_batch(self, values: list[Batch[Record]]) -> tuple[Iterable[Batch[Record]], bool]:
        records: list[Record] = []
        state = self._state
        assembler = state.assembler
        before = assembler.released_early
        read: set[str] = set()
        self._clock.received()
        for value in values:
            state.shard = value.shard or state.shard
            if value.items:
                records.extend(assembler.add_many(value.items))
            for progress in value.progress:
                self._observe(progress, read)
        records.extend(self._advance(self._clock.read))
        forwarded_progress = self._forward(read)
        instruments.TRACES_RELEASED_EARLY.inc(assembler.released_early - before)
        self._report_open()
        return self._output(records, forwarded_progress), False

    def _output(self, records: list[Record], progress: list[Progress]) -> list[Batch[Record]]:
        if not records and not progress:
            return []
        return [Batch(self._state.shard, records, tuple(progress))]

    def _observe(self, progress: Progress, read: set[str]) -> None:
        self._state.watermark.observe(progress.partition, progress.max_event_unix_ns,
                                      progress.wall_unix_ns)
        self._clock.read_at(progress.wall_unix_ns)
        self._seen(progress)
        read.add(progress.partition)

    def _seen(self, progress: Progress) -> None:
        state = self._state
        state.shard = progress.shard or state.shard
        source = state.sources.get(progress.partition)
        if source is None:
            state.sources[progress.partition] = SourceProgress(progress.max_event_unix_ns,
                                                               progress.wall_unix_ns)
            return
        source.max_event_unix_ns = max(source.max_event_unix_ns, progress.max_event_unix_ns)
        source.read_wall_unix_ns = max(source.read_wall_unix_ns, progress.wall_unix_ns)

    def _forward(self, read: set[str], *, capped: bool = True) -> list[Progress]:
        """Progress of the partitions read in this batch (the window step's clock follows their
        read times), and of any whose forwarded progress a release lets move on."""
        state = self._state
        limit = state.assembler.hold_limit_unix_ns() if capped else None
        out: list[Progress] = []
        for partition, source in state.sources.items():
            at = source.max_event_unix_ns if limit is None else min(source.max_event_unix_ns,
                                                                    limit)
            moved = source.forwarded_unix_ns is None or at > source.forwarded_unix_ns
            if partition in read or moved:
                out.append(Progress(forwarded(partition, state.shard), at,
                                    source.read_wall_unix_ns))
                if moved:
                    source.forwarded_unix_ns = at
        return out

    def _advance(self, wall_unix_ns: int) -> list[Record]:
        now = self._state.watermark.current(wall_unix_ns)
        return [] if now is None else self._state.assembler.advance(now)

    def _report_open(self) -> None:
        instruments.OPEN_TRACES.inc(self._state.assembler.open_traces - self._reported_open)
        self._reported_open = self._state.assembler.open_traces

    def on_notify(self) -> tuple[Iterable[Batch[Record]], bool]:
        records = self._advance(self._clock.now())
        progress = self._forward(set())
        self._report_open()
        return self._output(records, progress), False

    def on_eof(self) -> tuple[Iterable[Batch[Record]], bool]:
        records = self._state.assembler.release_all()
        progress = self._forward(set(), capped=False)
        self._report_open()
        return self._output(records, progress), False

    def notify_at(self) -> datetime | None:
        if self._state.assembler.open_traces == 0:
            return None
        return datetime.now(UTC) + IDLE_TICK

    def snapshot(self) -> AssemblyState:
        return self._state


# --- windows, rules, lifecycle -----------------------------------------------------------------


@dataclass(slots=True)
class WindowState:
    windows: ShardWindows
    watermark: Watermark
    evaluator: RuleEvaluator
    lifecycle: AlertLifecycle
    max_event_unix_ns: int = 0
    shard: str = ""


def lifecycle_policy(config: RulesConfig) -> dict[str, LifecyclePolicy]:
    """Per rule; reminders come from grouping, so the lifecycle sends none itself."""
    return {rule.name: LifecyclePolicy(
        for_=rule.for_, keep_firing_for=rule.keep_firing_for, repeat_interval=timedelta(0),
        resolve_timeout=max(timedelta(minutes=15), 3 * rule.over))
        for rule in config.rules}


WindowOutput = AlertEvent | Tick
WindowIn = Batch[Partial]


class WindowLogic(StatefulBatchLogic[WindowIn, WindowOutput, WindowState]):
    """One series shard: fold partials, close minutes at the watermark, evaluate, alert."""

    def __init__(self, state: WindowState, rules: Callable[[], RulesConfig],
                 on_closed: Callable[[int], None] | None = None,
                 on_closed_minutes: Callable[[list[ClosedMinute]], None] | None = None) -> None:
        self._state = state
        self._rules = rules
        self._config = rules()
        self._policies = lifecycle_policy(self._config)
        self._on_closed = on_closed
        self._on_closed_minutes = on_closed_minutes
        """Sees every minute this shard closes (tests, audits); treat buckets as read-only."""
        self._clock = SourceClock()
        self._ticked: int | None = None
        """Event time of the last `Tick` sent (ticks go out whenever the watermark moves)."""

    def _reload(self) -> None:
        config = self._rules()
        if config is not self._config:  # hot reload: a new, validated alerts.toml
            self._state.evaluator.reconfigure(config)
            self._policies = lifecycle_policy(config)
            self._config = config

    def on_batch(self, values: list[WindowIn]) -> tuple[Iterable[WindowOutput], bool]:
        self._reload()
        state = self._state
        clock = self._clock
        clock.received()
        # In arrival order: a partial is late only against progress that arrived before it
        # (progress that follows it in the batch covers it).
        # (The watermark is recomputed only before a partial that follows new progress and at
        # the end: progress arrives once per source batch from every assembly shard.)
        watermark = state.watermark.current(clock.read)
        stale = False
        for value in values:
            state.shard = value.shard or state.shard
            if value.items:
                if stale:
                    watermark = state.watermark.current(clock.read)
                    stale = False
                self._add(value.items, watermark)
            for progress in value.progress:
                self._observe(progress)
                stale = True
        if stale:
            watermark = state.watermark.current(clock.read)
        return self._close(watermark), False

    def _observe(self, progress: Progress) -> None:
        state = self._state
        state.watermark.observe(progress.partition, progress.max_event_unix_ns,
                                progress.wall_unix_ns)
        self._clock.read_at(progress.wall_unix_ns)
        state.max_event_unix_ns = max(state.max_event_unix_ns, progress.max_event_unix_ns)
        state.shard = progress.shard or state.shard

    def _add(self, partials: Iterable[Partial], watermark: int | None) -> None:
        add = self._state.windows.add_partial
        for partial in partials:
            verdict = add(partial, watermark)
            if verdict != "on_time":
                instruments.LATE_RECORDS.labels(verdict).inc(partial.records)

    def _close(self, watermark: int | None) -> list[WindowOutput]:
        state = self._state
        if watermark is None:
            return []
        closed_before = state.windows.closed_until_unix_ns
        out: list[WindowOutput] = []
        closed: list[ClosedMinute] = []
        # Close one minute at a time and evaluate it at once: rule views then read the windows
        # as they were at that minute. (A backlog can close more minutes in one go than the
        # minute ring keeps; evaluated afterwards, the early ones would see rings that moved
        # on.) Each closed minute is followed by its Tick, so routing sees events and event
        # time advance together.
        for step_end in [*self._minute_ends(watermark), watermark]:
            by_minute: dict[int, list[ClosedMinute]] = {}
            for minute in state.windows.close_until(step_end):
                by_minute.setdefault(minute.minute_start_unix_ns, []).append(minute)
            for start in sorted(by_minute):
                closed.extend(by_minute[start])
                end = start + MINUTE_NS
                lifecycle = state.lifecycle
                for evaluation in state.evaluator.evaluate(by_minute[start], state.windows):
                    # Without any alert instance on the shard, an evaluation that is no breach
                    # changes nothing (`AlertLifecycle.observe`): skipped, with its fingerprint
                    # hash (most evaluations, most of the time).
                    if not evaluation.is_breach and not len(lifecycle):
                        continue
                    policy = self._policies.get(evaluation.rule)
                    if policy is not None:
                        out.extend(lifecycle.observe(evaluation, policy))
                out.extend(lifecycle.tick(end))
                out.append(Tick(state.shard, end))
        moved = closed_before != state.windows.closed_until_unix_ns or bool(closed)
        if not moved and self._ticked is not None and watermark <= self._ticked:
            return []
        # Tick whenever event time moves, not only when a minute closes, so routing's
        # group_wait runs on time instead of waiting for the next minute to close.
        self._ticked = watermark
        out.extend(state.lifecycle.tick(watermark))
        out.append(Tick(state.shard, watermark))
        if moved:
            instruments.CLOSED_MINUTES.inc(len(closed))
            instruments.ACTIVE_SERIES.labels(state.shard).set(len(state.windows))
            instruments.set_shard_alerts(state.shard, state.lifecycle.counts())
        for event in out:
            if isinstance(event, AlertEvent):
                instruments.ALERT_EVENTS.labels(event.state, str(event.tier)).inc()
        if self._on_closed is not None and closed:
            self._on_closed(len(closed))
        if self._on_closed_minutes is not None and closed:
            self._on_closed_minutes(closed)
        return out

    def _minute_ends(self, watermark: int) -> range:
        """Ends of the minutes that closing up to `watermark` closes, oldest first."""
        windows = self._state.windows
        target = watermark - watermark % MINUTE_NS
        start = windows.closed_until_unix_ns
        if start is None:
            series = (windows.get(key) for key in windows)
            opened = [m for w in series if w is not None for m in w.open_minutes]
            start = min(opened, default=target)
        return range(start + MINUTE_NS, target + 1, MINUTE_NS)

    def on_notify(self) -> tuple[Iterable[WindowOutput], bool]:
        return self._close(self._state.watermark.current(self._clock.now())), False

    def on_eof(self) -> tuple[Iterable[WindowOutput], bool]:
        # End of input (backtest, demo): everything read is final, close every minute in it.
        end = self._state.max_event_unix_ns
        return (self._close(end - end % MINUTE_NS + MINUTE_NS) if end else []), False

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + IDLE_TICK

    def snapshot(self) -> WindowState:
        return self._state


# --- inhibition, silences, grouping -------------------------------------------------------------


@dataclass(slots=True)
class RoutingState:
    inhibitor: Inhibitor
    groupers: dict[int, Grouper]
    shards: int
    """Window shards that report event time; routing time is the slowest one's."""
    shard_now: dict[str, int] = field(default_factory=dict)
    now_unix_ns: int = 0
    pending: list[AlertEvent] = field(default_factory=list)
    """Events not yet reached by routing time (shards deliver in their own order)."""


def group_policies(config: RulesConfig) -> dict[int, GroupPolicy]:
    return {int(tier): GroupPolicy(group_by=tuple(t.group_by), group_wait=t.group_wait,
                                   group_interval=t.group_interval,
                                   repeat_interval=t.repeat_interval)
            for tier, t in config.tiers.items()}


class AlertRoutingLogic(StatefulBatchLogic[WindowOutput, AlertEvent | AlertGroup,
                                           RoutingState]):
    """All alerts meet here: inhibition and silences first, then per-tier grouping.

    Routing time is the minimum over window shards of their reported event time; events are
    applied in event-time order once routing time reaches them, with grouping flushed at each
    step, so the result does not depend on the order shards' outputs arrive in. Emits every
    (possibly suppressed) lifecycle event, for backtests and audit, and the `AlertGroup`s that
    notification delivers.
    """

    def __init__(self, state: RoutingState) -> None:
        self._state = state

    def on_batch(self, values: list[WindowOutput]
                 ) -> tuple[Iterable[AlertEvent | AlertGroup], bool]:
        state = self._state
        for value in values:
            if isinstance(value, Tick):
                previous = state.shard_now.get(value.shard, 0)
                state.shard_now[value.shard] = max(previous, value.now_unix_ns)
            else:
                state.pending.append(value)
        if len(state.shard_now) < state.shards:
            return [], False
        return self._advance(min(state.shard_now.values())), False

    def _advance(self, now: int) -> list[AlertEvent | AlertGroup]:
        state = self._state
        out: list[AlertEvent | AlertGroup] = []
        state.pending.sort(key=lambda e: (e.at_unix_ns, e.tier, e.rule, e.fingerprint))
        due = [e for e in state.pending if e.at_unix_ns <= now]
        state.pending = [e for e in state.pending if e.at_unix_ns > now]
        for event in due:
            out.extend(self._flush(event.at_unix_ns))
            for routed in state.inhibitor.update(event):
                out.append(routed)
                grouper = state.groupers.get(routed.tier)
                if grouper is not None:
                    grouper.add(routed, event.at_unix_ns)
        # Flush even when routing time did not move: groups just opened with a zero
        # group_wait are due now, not at the next tick.
        out.extend(self._flush(now, again=bool(due)))
        return out

    def _flush(self, now: int, *, again: bool = False) -> list[AlertEvent | AlertGroup]:
        state = self._state
        if now < state.now_unix_ns or (now == state.now_unix_ns and not again):
            return []
        state.now_unix_ns = now
        for event in state.inhibitor.tick(now):
            grouper = state.groupers.get(event.tier)
            if grouper is not None:
                grouper.add(event, now)
        out: list[AlertEvent | AlertGroup] = []
        for tier in sorted(state.groupers):
            out.extend(state.groupers[tier].flush(now))
        return out

    def on_eof(self) -> tuple[Iterable[AlertEvent | AlertGroup], bool]:
        # Input is over: event time is the furthest any shard got; then let every group's
        # remaining wait run out so nothing stays unsent.
        state = self._state
        ends = [*state.shard_now.values(), *(e.at_unix_ns for e in state.pending)]
        out = self._advance(max(ends)) if ends else []
        due = [at for at in (g.next_flush_at_unix_ns() for g in state.groupers.values())
               if at is not None]
        if due:
            out.extend(self._flush(max(due)))
        return out, False

    def snapshot(self) -> RoutingState:
        return self._state
