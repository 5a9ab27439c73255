"""Per-model usage inside a series, for explaining cost alerts.

A series grouped by (service, endpoint) mixes models; its counters cannot say whether cost grew
because of more requests, longer prompts, a model switch or a price change. `CostMix` keeps, per
model, the priced calls, their tokens by type and their cost, in every bucket (exactly
mergeable, bounded). At a cost alert's breach, `compare_windows` reads it for the breaching
window and the baseline window before it and returns `CostWindows`: plain numbers that travel
on the `Evaluation` to the notify stage, which splits the change by factor
(`notify.attribution`).

In: priced model calls (`add`), other mixes (`merge`). Out: `ModelCost` rows per window.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the windows import buckets, which import this module
    from metrics.windows import SeriesWindows

MIX_LIMIT = 8
"""Models with their own row per bucket; the rest pool under `OTHER_MODELS`."""
OTHER_MODELS = "(other models)"
PICO_USD = 10**12
MINUTE_NS = 60_000_000_000

COST_METRICS = frozenset({"cost_per_request", "total_cost_usd", "cost_per_session",
                          "cost_per_session_max"})
"""Metrics whose alerts carry an attribution of the cost change."""

ModelCostState = tuple[str, int, int, int, int, int]
"""(model, priced calls, input tokens incl. cached, cached input tokens, output tokens,
cost in pico-USD)."""


class CostMix:
    """Usage per model of the priced calls in a bucket.

    The `MIX_LIMIT` models with the smallest names keep their own row; the others pool under
    `OTHER_MODELS`. A model pooled in a part is never among the smallest of the whole, so
    merges give the same result in any grouping and order (totals are always exact).
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[str, list[int]] = {}

    def add(self, usage: ModelCostState) -> None:
        """Add (model, calls, input tokens, cached input tokens, output tokens, pico-USD)."""
        model, calls, input_tokens, cached, output, cost = usage
        row = self._rows.get(model)
        if row is None:
            row = self._row(model)
        row[0] += calls
        row[1] += input_tokens
        row[2] += cached
        row[3] += output
        row[4] += cost

    def _row(self, model: str) -> list[int]:
        named = [m for m in self._rows if m != OTHER_MODELS]
        if model != OTHER_MODELS and len(named) >= MIX_LIMIT:
            largest = max(named)
            if model > largest:
                model = OTHER_MODELS
            else:  # `model` displaces the largest name, whose counts pool
                evicted = self._rows.pop(largest)
                pool = self._rows.setdefault(OTHER_MODELS, [0] * 5)
                for i, value in enumerate(evicted):
                    pool[i] += value
        return self._rows.setdefault(sys.intern(model), [0] * 5)  # shared, see BoundedSet

    def merge(self, rows: Iterable[ModelCostState]) -> None:
        for row in rows:
            self.add(row)

    @property
    def rows(self) -> tuple[ModelCostState, ...]:
        """Sorted by model."""
        return tuple((m, r[0], r[1], r[2], r[3], r[4]) for m, r in sorted(self._rows.items()))


@dataclass(frozen=True, slots=True)
class ModelCost:
    """One model's priced calls over a window (counts may be scaled, hence floats)."""

    model: str
    calls: float
    input_tokens: float
    """Including the cached ones."""
    cached_input_tokens: float
    output_tokens: float
    cost_usd: float


@dataclass(frozen=True, slots=True)
class CostWindows:
    """Usage per model in an alert's window and in the baseline window before it.

    `baseline` is scaled to the duration of `current` (`baseline_scale` = current duration /
    baseline duration), so request volume compares rates.
    """

    current: tuple[ModelCost, ...]
    baseline: tuple[ModelCost, ...]
    current_s: float
    baseline_s: float
    baseline_scale: float


def baseline_span(detector: Mapping[str, Any] | None, over: timedelta) -> timedelta:
    """The period a cost alert's window is compared with: the detector's baseline (ratio,
    drift) or window (percentile, trend, zscore...), else (threshold rules) one `over`."""
    from detectors.params import parse_duration  # noqa: PLC0415 - keep metrics import-light

    for name in ("baseline", "window"):
        value = (detector or {}).get(name)
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                break
    return over


def _models(rows: Iterable[ModelCostState], scale: float) -> tuple[ModelCost, ...]:
    return tuple(ModelCost(m, calls * scale, inp * scale, cached * scale, out * scale,
                           cost / PICO_USD * scale)
                 for m, calls, inp, cached, out, cost in rows if calls)


def compare_windows(series: SeriesWindows, over: timedelta, baseline: timedelta,
                    end_unix_ns: int) -> CostWindows | None:
    """Per-model usage of `over` before `end_unix_ns` and of `baseline` before that window,
    the latter scaled to the former's duration. None when either window has no priced call.

    Durations are those the views really cover (long views start at an hour or day edge); the
    baseline's begins no earlier than its first record, so a series younger than its baseline
    period is not mistaken for a traffic rise.
    """
    current_bucket = series.view(over, end_unix_ns)
    start, end = series.covered(over, end_unix_ns)
    current_s = (end - start) / 1e9
    base_bucket = series.view(baseline, start)
    b_start, b_end = series.covered(baseline, start)
    baseline_s = _seconds(b_start, b_end, base_bucket.min_event_unix_ns)
    if current_s <= 0 or baseline_s <= 0:
        return None
    current = _models(current_bucket.cost_mix.rows, 1.0)
    scale = current_s / baseline_s
    base = _models(base_bucket.cost_mix.rows, scale)
    if not current or not base:
        return None
    return CostWindows(current, base, current_s, baseline_s, scale)


def _seconds(start: int, end: int, first_event: int | None) -> float:
    if first_event is not None:  # the series began inside the window: count from its minute
        start = max(start, first_event - first_event % MINUTE_NS)
    return max(0, end - start) / 1e9
