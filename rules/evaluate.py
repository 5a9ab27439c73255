"""Rule evaluation: closed minutes of a shard's series -> one `Evaluation` per rule and series.

In: the `ClosedMinute`s a watermark closed on one shard, that shard's windows (for the views a
rule's `over` needs) and the rules. Out: `Evaluation`s in event time, each with the value, the
threshold or baseline it was compared with, the sample size, exemplar trace ids and the live
versions (and whether one changed near the onset). Detector state per (rule, series) lives
here; it is plain data for recovery.

Cadence: threshold (`when`) rules look at the trailing `over` window every closed minute;
detector rules get one non-overlapping point per `over` (detectors weight points by their
sample size, so overlapping windows would count each request several times).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from detectors import Detector, Score, maker
from metrics.bucket import MINUTE_NS, Bucket
from metrics.catalog import Compute, MetricValue, metric_function, reads
from metrics.cost_mix import COST_METRICS, baseline_span, compare_windows
from metrics.series import SeriesKey
from metrics.shard import ShardWindows, View, ViewKey
from metrics.windows import ClosedMinute, SeriesWindows
from rules.config import Rule, RulesConfig
from rules.families import Family, family_of, series_labels
from rules.records import Evaluation, Labels

VERSION_FIELDS = ("prompt_template_version", "model", "app_version")
CHANGE_LOOKBACK = timedelta(hours=1)
_Versions = tuple[tuple[str, tuple[str, ...]], ...]
_Slot = tuple[tuple[str, ...], str]
"""(group_by, tag) of a rule family: which series keys its rules read."""
_Wants = dict[tuple[timedelta, int], frozenset[str]]
"""Views one series needs at one minute: (over, end) -> what they must merge."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    family: Family
    over_ns: int
    is_detector: bool
    reads: frozenset[str]
    """What the metric reads of a view besides counters (`catalog.reads`)."""


@dataclass(frozen=True, slots=True)
class _Ready:
    """A compiled rule with what evaluating it on every series, each minute, looks up once.
    Rebuilt from `_compiled` (not pickled: evaluator snapshots hold what they always did)."""

    compiled: _Compiled
    metric: Compute
    """The rule's metric (`catalog.metric_function`), called with `minutes`."""
    minutes: float
    window_s: float
    threshold: float | None
    rule: Rule
    over: timedelta
    reads: frozenset[str]
    alerts_missing: bool
    """`on_missing_data = "alert"`."""


class RuleEvaluator:
    """Evaluates every rule on the series of one shard; keeps per-series detector state."""

    def __init__(self, config: RulesConfig) -> None:
        self._compiled = _compile(config)
        self._by_slot = _by_slot(self._compiled)
        self._ready = _ready(self._compiled)
        self._detectors: dict[tuple[str, SeriesKey], Detector[Any]] = {}
        self._last_versions: dict[tuple[str, SeriesKey], tuple[tuple[str, tuple[str, ...]], ...]]
        self._last_versions = {}
        self._memos: dict[SeriesKey, dict[ViewKey, Bucket]] = {}
        """The views of the quiet series of the last minute evaluated, for the next one
        (`_Views.fill`): small buckets (quiet series have little data), dropped once a series
        closes a minute with data."""
        self._memo_shard: ShardWindows | None = None
        """The shard `_memos` hold views of."""
        self._makers: dict[str, Callable[[], Detector[Any]]] = {}
        """Per rule name, what makes a series' new detector (`detectors.maker`: the rule's
        detector table read once, not once per series)."""

    def __getstate__(self) -> dict[str, Any]:
        # The memos (a cache), `_ready` (made from `_compiled`) and the detector makers (from
        # the rules): snapshots hold exactly what they held before those existed.
        state = dict(self.__dict__)
        del state["_memos"], state["_memo_shard"], state["_ready"], state["_makers"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ready = _ready(self._compiled)
        self._memos = {}
        self._memo_shard = None
        self._makers = {}

    @property
    def detector_count(self) -> int:
        return len(self._detectors)

    def evaluate(self, closed: list[ClosedMinute], shard: ShardWindows) -> list[Evaluation]:
        """Evaluations for the closed minutes, in event-time order."""
        out: list[Evaluation] = []
        labels = _AlertLabels()
        by_minute: dict[int, list[ClosedMinute]] = defaultdict(list)
        for minute in closed:
            by_minute[minute.minute_start_unix_ns].append(minute)
        for start in sorted(by_minute):
            end = start + MINUTE_NS
            # Views of this minute; a quiet series' are those of its last minute when they
            # merge the same blobs (`_Views.fill`). Series not closing a quiet minute here
            # drop out of the memos.
            memos = self._memos if shard is self._memo_shard else {}
            self._memos, self._memo_shard = {}, shard
            views = _Views(shard, memos, self._memos)
            now = _Minute(views, labels, end, _datetime(end))
            keys = {minute.key for minute in by_minute[start]}
            quiet = {minute.key for minute in by_minute[start] if minute.bucket.is_empty}
            # Keys by family slot, each worked out once (not once per rule), in `keys` order.
            by_family: dict[_Slot, list[SeriesKey]] = {}
            for key in keys:
                by_family.setdefault(_family_slot(key), []).append(key)
            # Every view the rules below read, series by series: the views of one series share
            # its unpacked blobs (a 1 h view and a 5 m one read the same last minutes), and
            # each merges only what its rules read (`catalog.reads`), not a whole bucket.
            for slot, family_keys in by_family.items():
                wants = self._wants(slot, end)
                if wants:
                    wanted = [(over, at, parts) for (over, at), parts in wants.items()]
                    for key in family_keys:
                        views.fill(key, wanted, quiet=key in quiet)
            for ready in self._ready:
                compiled = ready.compiled
                if compiled.is_detector and end % compiled.over_ns:
                    continue  # detectors see one point per `over`
                mine = by_family.get((compiled.family.group_by, compiled.family.tag), [])
                if compiled.family.across is not None:
                    out.extend(self._across(ready, mine, now))
                else:
                    out.extend([self._one(ready, key, now) for key in mine])
        return out

    def _wants(self, slot: _Slot, end: int) -> _Wants:
        """The views (and their parts) the rules of one family read at minute end `end`."""
        wants: _Wants = {}
        for compiled in self._by_slot.get(slot, ()):
            if compiled.is_detector and end % compiled.over_ns:
                continue
            rule = compiled.rule
            view = (rule.over, end)
            wants[view] = wants.get(view, frozenset()) | compiled.reads
            if rule.rebaseline_on:  # `_changed`: versions only
                wants.setdefault((CHANGE_LOOKBACK, _before(rule, end)), frozenset())
        return wants

    def _one(self, ready: _Ready, key: SeriesKey, now: _Minute) -> Evaluation:
        rule = ready.rule
        views, end = now.views, now.end
        bucket = views.get(key, ready.over, end, ready.reads)
        metric: MetricValue | None = None
        versions: _Versions = ()
        traces: tuple[str, ...] = ()
        if bucket is not None:
            metric = ready.metric(bucket, ready.minutes)
            versions, traces = views.about(bucket)
        # Which versions changed needs a second (hour-long) view: only breaches report it and
        # only rebaseline_on rules act on it, so the other evaluations skip it (most of them).
        changed = (self._changed(rule, key, views, end, versions)
                   if rule.rebaseline_on else None)
        labels = now.labels.of(rule, key)
        if metric is None:
            missing = ready.alerts_missing and bucket is not None and bucket.is_empty
            return _evaluation(ready, labels, end=end, versions=versions,
                               changed=changed or (), traces=traces, is_breach=missing,
                               value=None, detail="no data in the window" if missing else "")
        value = rule.value_of(metric.value)
        n = metric.n
        if n < rule.min_samples:
            return _evaluation(ready, labels, end=end, versions=versions,
                               changed=changed or (), traces=traces, is_breach=False,
                               value=value, samples=n, is_gated=True,
                               detail=f"{n} samples < min_samples {rule.min_samples}")
        detector = self._detector(rule, key)
        if changed and set(changed) & set(rule.rebaseline_on):
            rebaseline = getattr(detector, "rebaseline", None)
            if callable(rebaseline):
                rebaseline()
        weight = max(1, n)
        score = detector.score(value, now.at, n=weight)
        detector.learn(value, now.at, n=weight)
        evaluation = _scored(ready, labels, score, end=end, versions=versions,
                             changed=changed or (), traces=traces, value=value, samples=n,
                             threshold=ready.threshold)
        if evaluation.is_breach and changed is None:
            evaluation = replace(evaluation,
                                 changed=self._changed(rule, key, views, end, versions))
        if evaluation.is_breach and rule.metric in COST_METRICS:
            # Per-model usage now and in the baseline period, to attribute the cost change;
            # only breaches pay for the baseline view.
            series = views.series(key)
            evaluation = replace(evaluation, cost=None if series is None else compare_windows(
                series, rule.over, baseline_span(rule.detector, rule.over), end))
        return evaluation

    def _across(self, ready: _Ready, keys: list[SeriesKey], now: _Minute) -> list[Evaluation]:
        """Rules comparing sub-series (`across`): feed every group, then judge each."""
        compiled = ready.compiled
        rule, family = compiled.rule, compiled.family
        views, end, at = now.views, now.end, now.at
        outers: dict[SeriesKey, list[tuple[SeriesKey, str, MetricValue, Bucket]]]
        outers = defaultdict(list)
        for key in keys:
            bucket = views.get(key, rule.over, end, compiled.reads)
            if bucket is None:
                continue
            metric = ready.metric(bucket, ready.minutes)
            group = dict(key).get(family.across or "", "")
            if metric is not None:
                outers[family.outer_key(key)].append((key, group, metric, bucket))
        out = []
        for outer, members in outers.items():
            detector = self._detector(rule, outer)
            observe = getattr(detector, "observe", None)
            compare = getattr(detector, "compare", None)
            for key, group, metric, bucket in members:
                labels, traces = now.labels.of(rule, key), views.about(bucket)[1]
                value = rule.value_of(metric.value)
                score: Score | None
                if compare is not None and observe is not None:  # two_sample
                    observe(group, value, at, n=max(1, metric.n))
                    score = compare(group, at)
                elif observe is not None:  # novelty: the group's volume in the window
                    score = observe(group, max(0, round(metric.value)), at)
                else:
                    score = detector.score(value, at, n=max(1, metric.n))
                    detector.learn(value, at, n=max(1, metric.n))
                out.append(_scored(ready, labels, score, end=end, versions=(), changed=(),
                                   traces=traces, value=value, samples=metric.n,
                                   threshold=None))
        return out

    def _detector(self, rule: Rule, key: SeriesKey) -> Detector[Any]:
        slot = (rule.name, key)
        detector = self._detectors.get(slot)
        if detector is None:
            make = self._makers.get(rule.name)
            if make is None:  # `rule.build_detector()`, the table read once
                make = self._makers[rule.name] = maker(rule.detector_params())
            detector = self._detectors[slot] = make()
        return detector

    def _changed(self, rule: Rule, key: SeriesKey, views: _Views, end: int,
                 current: _Versions) -> tuple[str, ...]:
        """Which versions live in the window the hour before it had not seen."""
        if not current:
            return ()
        before = views.get(key, CHANGE_LOOKBACK, _before(rule, end))
        if before is None or before.is_empty:
            return ()
        previous = _version_sets(before)
        return tuple(name for (name, now), (_, then) in zip(current, previous, strict=True)
                     if then and set(now) - set(then))

    def reconfigure(self, config: RulesConfig) -> set[str]:
        """Apply reloaded rules; detectors of unchanged rules keep their baselines, those of
        changed or removed rules start over. Returns the names whose state was dropped."""
        old = {c.rule.name: c.rule for c in self._compiled}
        new = {rule.name: rule for rule in config.rules}
        changed = {name for name, rule in old.items() if new.get(name) != rule}
        for slot in [s for s in self._detectors if s[0] in changed]:
            del self._detectors[slot]
        self._compiled = _compile(config)
        self._by_slot = _by_slot(self._compiled)
        self._ready = _ready(self._compiled)
        self._memos, self._memo_shard = {}, None
        self._makers = {}
        return changed


class _Views:
    """The shard's views for one `evaluate` call, each merged once: rules of one family and
    `over` (error rate and TTFT p99 per model, say) read the same window.

    Views are partial (`ShardWindows.view_parts`): counters, exemplars and versions (what an
    evaluation carries), plus the parts their rules' metrics read."""

    __slots__ = ("_about", "_cache", "_memos", "_next", "_shard")

    def __init__(self, shard: ShardWindows, memos: dict[SeriesKey, dict[ViewKey, Bucket]],
                 next_memos: dict[SeriesKey, dict[ViewKey, Bucket]]) -> None:
        self._shard = shard
        self._about: dict[int, tuple[Bucket, _Versions, tuple[str, ...]]] = {}
        """`about` of each view bucket by id (the bucket kept, so ids stay unique)."""
        self._cache: dict[tuple[SeriesKey, timedelta, int],
                          tuple[frozenset[str], Bucket | None]] = {}
        self._memos = memos
        """Views of the last minute, per series: `fill` reuses those that did not change."""
        self._next = next_memos
        """Filled with this minute's views, per series, for the next minute."""

    def series(self, key: SeriesKey) -> SeriesWindows | None:
        return self._shard.get(key)

    def fill(self, key: SeriesKey, wanted: list[View], *, quiet: bool = False) -> None:
        """Merge the views `wanted` of one series together (`ShardWindows.views_parts`).

        `quiet`: the minute just closed holds nothing (every view has data in it otherwise,
        so none can be the last minute's). Then views whose `ViewKey` is one of the last
        minute's are taken from it (a quiet series' windows change only when a minute with
        data leaves them), and this minute's are kept for the next.
        """
        view_keys = self._shard.view_keys(key, wanted) if quiet else None
        if view_keys is None:
            buckets = self._shard.views_parts(key, wanted)
        else:
            last = self._memos.get(key, {})
            buckets = [last.get(view_key) for view_key in view_keys]
            missing = [i for i, bucket in enumerate(buckets) if bucket is None]
            if missing:
                merged = self._shard.views_parts(key, [wanted[i] for i in missing])
                for i, bucket in zip(missing, merged, strict=True):
                    buckets[i] = bucket
            self._next[key] = {view_key: bucket for view_key, bucket
                               in zip(view_keys, buckets, strict=True) if bucket is not None}
        for (over, end, parts), bucket in zip(wanted, buckets, strict=True):
            self._cache[key, over, end] = (parts, bucket)

    def about(self, bucket: Bucket) -> tuple[_Versions, tuple[str, ...]]:
        """The version sets and exemplar trace ids of a view, which every evaluation reading
        it carries: worked out once per bucket (views of one series often share one)."""
        known = self._about.get(id(bucket))
        if known is None:
            known = self._about[id(bucket)] = (bucket, _version_sets(bucket),
                                               bucket.exemplars.trace_ids)
        return known[1], known[2]

    def get(self, key: SeriesKey, over: timedelta, end: int,
            parts: frozenset[str] = frozenset()) -> Bucket | None:
        """The view, with at least `parts` (merged now unless `fill` did)."""
        cached = self._cache.get((key, over, end))
        if cached is not None:
            if parts <= cached[0]:
                return cached[1]
            parts |= cached[0]
        bucket = self._shard.view_parts(key, over, end, parts)
        self._cache[key, over, end] = (parts, bucket)
        return bucket


@dataclass(frozen=True, slots=True)
class _Minute:
    """What the evaluations of one closed minute share."""

    views: _Views
    labels: _AlertLabels
    end: int
    """End of the minute (Unix ns): the windows end here."""
    at: datetime
    """`end` as detectors take it."""


class _AlertLabels:
    """Alert labels of the series of one `evaluate` call: rules without extra labels (most)
    give a series the same ones, worked out once, not once per rule."""

    __slots__ = ("_plain",)

    def __init__(self) -> None:
        self._plain: dict[SeriesKey, Labels] = {}

    def of(self, rule: Rule, key: SeriesKey) -> Labels:
        """`rule.alert_labels` of the series `key`."""
        if rule.labels:
            return rule.alert_labels(series_labels(key))
        labels = self._plain.get(key)
        if labels is None:
            labels = self._plain[key] = rule.alert_labels(series_labels(key))
        return labels


def _compile(config: RulesConfig) -> tuple[_Compiled, ...]:
    return tuple(_Compiled(rule, family_of(rule), int(rule.over.total_seconds()) * 1_000_000_000,
                           rule.when is None, reads(rule.metric)) for rule in config.rules)


def _ready(compiled: tuple[_Compiled, ...]) -> tuple[_Ready, ...]:
    return tuple(_Ready(one, *metric_function(one.rule.metric, one.rule.over),
                        one.rule.over.total_seconds(), _threshold(one.rule), one.rule,
                        one.rule.over, one.reads, one.rule.on_missing_data == "alert")
                 for one in compiled)


def _by_slot(compiled: tuple[_Compiled, ...]) -> dict[_Slot, tuple[_Compiled, ...]]:
    out: dict[_Slot, list[_Compiled]] = defaultdict(list)
    for one in compiled:
        out[one.family.group_by, one.family.tag].append(one)
    return {slot: tuple(rules) for slot, rules in out.items()}


def _before(rule: Rule, end: int) -> int:
    """End of the hour `_changed` compares a window ending at `end` with."""
    return end - int(rule.over.total_seconds() * 1e9)


def _family_slot(key: SeriesKey) -> tuple[tuple[str, ...], str]:
    """(group_by, tag) of the family a series key belongs to."""
    names = tuple(name for name, _ in key if not name.startswith("~"))
    tag = next((value for name, value in key if name.startswith("~")), "")
    return names, tag



def _version_sets(bucket: Bucket) -> _Versions:
    return (("prompt_template_version", bucket.prompt_template_versions.values),
            ("model", bucket.models.values),
            ("app_version", bucket.app_versions.values))


def _threshold(rule: Rule) -> float | None:
    return rule.when.threshold if rule.when is not None else None


def _datetime(unix_ns: int) -> datetime:
    return datetime.fromtimestamp(unix_ns / 1e9, tz=UTC)


def _evaluation(ready: _Ready, labels: Labels, *, end: int, versions: _Versions,
                changed: tuple[str, ...], traces: tuple[str, ...], is_breach: bool,
                value: float | None, samples: int = 0, is_gated: bool = False,
                threshold: float | None = None, score: Score | None = None,
                detail: str = "") -> Evaluation:
    """One rule's evaluation of one series (`labels`: its alert labels) for the window ending
    at `end`: `traces` are the view's exemplar trace ids (none without a view). A function,
    not an object per evaluation: one is made for every rule and series each minute."""
    rule = ready.rule
    return Evaluation(
        rule=rule.name, tier=rule.tier, labels=labels, at_unix_ns=end, window_s=ready.window_s,
        is_breach=is_breach, value=value, threshold=threshold,
        baseline=score.baseline if score is not None else None,
        spread=score.spread if score is not None else None,
        anomaly=score.anomaly if score is not None else None,
        samples=samples, is_gated=is_gated, exemplar_trace_ids=traces, versions=versions,
        changed=changed, detail=detail)


def _scored(ready: _Ready, labels: Labels, score: Score | None, *, end: int,
            versions: _Versions, changed: tuple[str, ...], traces: tuple[str, ...],
            value: float, samples: int, threshold: float | None) -> Evaluation:
    """The `_evaluation` of a detector's `score` (None: the detector is warming up, no
    decision either way)."""
    if score is None:
        return _evaluation(ready, labels, end=end, versions=versions, changed=changed,
                           traces=traces, is_breach=False, value=value, samples=samples,
                           is_gated=True, threshold=threshold, detail="baseline warming up")
    return _evaluation(ready, labels, end=end, versions=versions, changed=changed,
                       traces=traces, is_breach=score.is_anomalous, value=value,
                       samples=samples, threshold=threshold, score=score,
                       detail=score.detail)
