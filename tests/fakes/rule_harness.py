"""Rules over synthetic records without a dataflow: the flow's own window step, driven minute by
minute in event time, collecting the alert lifecycle's events.

In: `LLMSpan`s / `EvalResult`s as trace assembly emits them, and a `RulesConfig`. Out: the
`AlertEvent`s the flow's window step emits (before inhibition, silences and grouping), plus
statistics of every `Evaluation` (how many were gated, breached, the values seen) to explain a
rule that did or did not fire.

What runs is the production code of `flows/`, minus Bytewax: each minute's records are
pre-aggregated with `flows.pipeline.preaggregate_batches` (one partial per rule family, series
and minute, in a `Batch` per window shard that owns the series), and every shard's partials plus
a `Progress` up to the end of that minute go, as one `Batch`, to that shard's
`flows.steps.WindowLogic.on_batch`, whose state is a fresh `WindowState` (ShardWindows,
RuleEvaluator, AlertLifecycle) and which derives its policies with
`flows.steps.lifecycle_policy(config)`. So windows close, rules evaluate and alerts move in
exactly WindowLogic's order (close_until(watermark) -> per closed minute: evaluate ->
lifecycle.observe -> lifecycle.tick(minute end) -> finally tick(watermark)). Records reach the
window step in event-time order with no lateness: a minute closes once every record ending in it
was added, as the flow does once the source watermark passes it. The only addition is a tap on
the evaluator that counts evaluations (`stats`) and keeps those of `trace`d rules.

`snapshot()` copies the whole state, so a warm multi-day baseline can be computed once and each
incident replayed from it; `reconfigure` / `narrow` change the rules the way a hot reload of
alerts.toml does (the flow's own reload path in WindowLogic), e.g. to replay an incident with
only the rule under test, whose evaluations do not depend on the other rules.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flows.pipeline import WINDOW_SHARDS, Preaggregator, preaggregate_batches
from flows.steps import Batch, Progress, WindowLogic, WindowState, lifecycle_policy
from ingest.span import EvalResult, LLMSpan
from metrics.bucket import MINUTE_NS, event_unix_ns, minute_of
from metrics.catalog import compute
from metrics.partial import Partial
from metrics.series import key_of
from metrics.shard import ShardWindows
from metrics.watermark import Watermark
from metrics.windows import ClosedMinute
from rules.config import RulesConfig
from rules.evaluate import RuleEvaluator
from rules.lifecycle import AlertLifecycle
from rules.records import AlertEvent, Evaluation, Labels

Record = LLMSpan | EvalResult
PARTITION = "0-harness"
"""The one source partition the harness reports progress for."""
IDLE_TIMEOUT = timedelta(days=3650)
"""Wall-clock idle timeout of the watermark: never reached, event time comes from records."""


@dataclass(slots=True)
class RuleStats:
    """What a rule's evaluations looked like over a run."""

    evaluations: int = 0
    gated: int = 0
    """Too few samples, or a detector warming up: no decision."""
    decisive: int = 0
    """Breaches, and clears with a value."""
    breaches: int = 0
    lowest: float | None = None
    highest: float | None = None
    """Extremes of the decisive values (what the condition or detector saw)."""
    series: set[Labels] = field(default_factory=set)
    last_gated_detail: str = ""

    def add(self, evaluation: Evaluation) -> None:
        self.evaluations += 1
        self.series.add(evaluation.labels)
        if evaluation.is_gated:
            self.gated += 1
            self.last_gated_detail = evaluation.detail
            return
        value = evaluation.value
        if value is None and not evaluation.is_breach:
            return
        self.decisive += 1
        self.breaches += evaluation.is_breach
        if value is not None:
            self.lowest = value if self.lowest is None else min(self.lowest, value)
            self.highest = value if self.highest is None else max(self.highest, value)

    def summary(self) -> str:
        span = ("-" if self.lowest is None else
                f"{self.lowest:.4g}..{self.highest:.4g}")
        gated = f", last gated: {self.last_gated_detail}" if self.gated else ""
        return (f"{self.evaluations} evaluations on {len(self.series)} series: "
                f"{self.decisive} decisive (values {span}), {self.breaches} breaches, "
                f"{self.gated} gated{gated}")


class _TappedEvaluator(RuleEvaluator):
    """The production evaluator, with every evaluation also handed to `tap`."""

    def __init__(self, config: RulesConfig, tap: Callable[[list[Evaluation]], None]) -> None:
        super().__init__(config)
        self._tap = tap

    def evaluate(self, closed: list[ClosedMinute], shard: ShardWindows) -> list[Evaluation]:
        out = super().evaluate(closed, shard)
        self._tap(out)
        return out


class RuleHarness:
    """The window step of the flow for `config`, over `shards` window shards (the flow's 16
    shard keys folded onto `shards`; series of one rule family and outer key stay together)."""

    def __init__(self, config: RulesConfig, *, shards: int = 1,
                 trace: Iterable[str] = ()) -> None:
        if not 1 <= shards <= WINDOW_SHARDS:
            raise ValueError(f"shards must be within 1..{WINDOW_SHARDS}, got {shards}")
        self.config = config
        self.shards = shards
        self.policies = lifecycle_policy(config)
        self.trace = set(trace)
        """Rules whose evaluations are all kept in `evaluations` (the rest only counted)."""
        self.stats: dict[str, RuleStats] = {rule.name: RuleStats() for rule in config.rules}
        self.evaluations: list[Evaluation] = []
        self.events: list[AlertEvent] = []
        self.now_ns: int | None = None
        """Event time every shard has closed up to (a minute edge)."""
        self.records = 0
        self._pending: defaultdict[int, list[Record]] = defaultdict(list)
        wall = time.time_ns()
        self._logics = [
            WindowLogic(WindowState(
                ShardWindows(),
                Watermark((PARTITION,), allowed_lateness=timedelta(0), idle_timeout=IDLE_TIMEOUT,
                          started_wall_unix_ns=wall),
                _TappedEvaluator(config, self._observe), AlertLifecycle(), shard=f"w{index}"),
                self._rules)
            for index in range(shards)]

    def _rules(self) -> RulesConfig:
        return self.config

    def _observe(self, evaluations: list[Evaluation]) -> None:
        for evaluation in evaluations:
            self.stats[evaluation.rule].add(evaluation)
            if evaluation.rule in self.trace:
                self.evaluations.append(evaluation)

    # --- feeding ---

    def add(self, records: Iterable[Record]) -> None:
        """Queue records for the minute their event time falls in (not yet closed)."""
        for record in records:
            minute = minute_of(event_unix_ns(record))
            if self.now_ns is not None and minute < self.now_ns:
                raise ValueError(f"record at {_iso(event_unix_ns(record))} is behind the "
                                 f"closed edge {_iso(self.now_ns)}; add records in time order")
            self._pending[minute].append(record)
            self.records += 1

    def run_until(self, end_ns: int) -> list[AlertEvent]:
        """Close every minute ending at or before `end_ns`, one minute per batch; the alert
        events this caused."""
        target = minute_of(end_ns)
        minute = self.now_ns
        if minute is None:
            minute = min(self._pending, default=target)
        before = len(self.events)
        while minute < target:
            self._step(minute)
            minute += MINUTE_NS
        return self.events[before:]

    def feed(self, minutes: Iterable[tuple[int, Sequence[Record]]], *,
             until: Callable[[list[AlertEvent]], bool] | None = None) -> list[AlertEvent]:
        """Add each minute's arrivals (as `TrafficGenerator.minutes` yields them) and close that
        minute (later arrivals cannot end before they start), stopping early once `until`
        holds for the events of this call; those events."""
        before = len(self.events)
        for minute_ns, records in minutes:
            self.add(records)
            self.run_until(minute_ns + MINUTE_NS)
            if until is not None and until(self.events[before:]):
                break
        return self.events[before:]

    def reconfigure(self, config: RulesConfig) -> None:
        """Switch to `config` as a hot reload does: from the next minute the window step
        evaluates only its rules (unchanged rules keep their detector state) and pre-aggregates
        only its families."""
        self.config = config
        self.policies = lifecycle_policy(config)
        for rule in config.rules:
            self.stats.setdefault(rule.name, RuleStats())

    def narrow(self, *names: str) -> None:
        """Keep only the named rules (a hot reload of alerts.toml without the others)."""
        unknown = set(names) - {rule.name for rule in self.config.rules}
        if unknown:
            raise KeyError(f"no rule(s) {sorted(unknown)} in the config")
        self.reconfigure(self.config.model_copy(update={
            "rules": tuple(rule for rule in self.config.rules if rule.name in names)}))

    def _step(self, minute: int) -> None:
        records = self._pending.pop(minute, [])
        partials: list[list[Partial]] = [[] for _ in self._logics]
        # A fresh pre-aggregator per minute (the flow keeps one): its memos change no partial,
        # and would only grow what `snapshot()` deep-copies.
        for key, batch in preaggregate_batches(Preaggregator(self._rules),
                                               [Batch("a0", records)]):
            partials[int(key.removeprefix("w")) % self.shards].extend(batch.items)
        end = minute + MINUTE_NS
        wall = time.time_ns()
        for index, logic in enumerate(self._logics):
            progress = (Progress(PARTITION, end, wall),)
            out, _ = logic.on_batch([Batch(f"w{index}", partials[index], progress)])
            self.events.extend(event for event in out if isinstance(event, AlertEvent))
        self.now_ns = end

    # --- reading ---

    def fired(self, rule: str | None = None, *, since_ns: int | None = None
              ) -> list[AlertEvent]:
        """Alerts that started firing (no reminders), optionally of one rule and from a time."""
        return [event for event in self.events
                if event.state == "firing" and not event.is_repeat
                and (rule is None or event.rule == rule)
                and (since_ns is None or event.at_unix_ns >= since_ns)]

    def traced(self, rule: str, labels: Labels | None = None) -> list[Evaluation]:
        """Kept evaluations of a traced rule (of one series when `labels` is given)."""
        return [e for e in self.evaluations
                if e.rule == rule and (labels is None or e.labels == labels)]

    def metric(self, name: str, labels: Mapping[str, str], over: timedelta,
               end_ns: int) -> float | None:
        """Metric `name` of the series with exactly `labels` over the `over` before `end_ns`, as
        the windows hold it (None: no such series or no data)."""
        key = key_of(labels.items())
        for logic in self._logics:
            bucket = logic.snapshot().windows.view(key, over, end_ns)
            if bucket is not None:
                value = compute(name, bucket, over)
                return None if value is None else value.value
        return None

    def snapshot(self) -> RuleHarness:
        """An independent copy of the whole state (windows, detectors, alerts, queued records
        and statistics); the config is shared, it is immutable."""
        return copy.deepcopy(self, {id(self.config): self.config})


def describe(evaluations: Sequence[Evaluation], *, limit: int = 12) -> str:
    """The last evaluations as lines (time, labels, value, bound, verdict, detail)."""
    lines = []
    for e in evaluations[-limit:]:
        bound = e.threshold if e.threshold is not None else e.baseline
        verdict = "BREACH" if e.is_breach else "gated" if e.is_gated else "clear"
        value = "-" if e.value is None else f"{e.value:.4g}"
        against = "" if bound is None else f" vs {bound:.4g}"
        lines.append(f"  {_iso(e.at_unix_ns)} {dict(e.labels)} {value}{against} n={e.samples} "
                     f"{verdict} {e.detail}")
    return "\n".join(lines)


def _iso(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns / 1e9, tz=UTC).strftime("%a %Y-%m-%d %H:%M")
