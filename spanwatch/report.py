"""Summary of ingested records for `spanwatch demo`: per series totals and per-minute error
rates, so a person can see what spanwatch understood of the traffic. Memory grows with series x
minutes, which suits a bounded demo run, not a long-running job.

The alerting decisions belong to the detectors and rules; this only counts.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

from ingest.span import EvalResult, LLMSpan

SeriesKey = tuple[str, str, str]
"""(service, model, prompt_template_version)"""

MINUTE_NS = 60 * 1_000_000_000


@dataclass(slots=True)
class SeriesTotals:
    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    unknown_cost: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ttft_sum_s: float = 0.0
    ttft_count: int = 0
    by_minute: dict[int, list[int]] = field(default_factory=dict)
    """minute start (Unix ns) -> [requests, errors]"""


@dataclass(frozen=True, slots=True)
class ErrorMinute:
    series: SeriesKey
    minute_unix_ns: int
    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests


class IngestReport:
    """Thread-safe accumulator fed by the flow's record sink."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.series: dict[SeriesKey, SeriesTotals] = defaultdict(SeriesTotals)
        self.records = 0
        self.evals = 0
        self.kinds: dict[str, int] = defaultdict(int)

    def add(self, records: list[LLMSpan | EvalResult]) -> None:
        with self._lock:
            for record in records:
                self.records += 1
                if isinstance(record, EvalResult):
                    self.evals += 1
                    continue
                self.kinds[record.kind] += 1
                self.evals += len(record.evals)
                if record.kind not in ("llm", "embedding"):
                    continue
                totals = self.series[series_key(record)]
                totals.requests += 1
                minute = record.end_unix_ns - record.end_unix_ns % MINUTE_NS
                counts = totals.by_minute.setdefault(minute, [0, 0])
                counts[0] += 1
                if record.is_error:
                    totals.errors += 1
                    counts[1] += 1
                    totals.errors_by_kind[record.error_kind or "other"] += 1
                if record.cost_usd is not None:
                    totals.cost_usd += record.cost_usd
                elif record.unknown_cost_reason is not None:
                    totals.unknown_cost += 1
                if record.time_to_first_token_s is not None:
                    totals.ttft_sum_s += record.time_to_first_token_s
                    totals.ttft_count += 1

    def error_minutes(self, min_requests: int, min_error_rate: float) -> list[ErrorMinute]:
        """Minutes in which a series had at least `min_requests` and an error rate above
        `min_error_rate` (sample-size gated, so one error among a few requests is not listed)."""
        found = []
        for key, totals in self.series.items():
            for minute, (requests, errors) in sorted(totals.by_minute.items()):
                if requests >= min_requests and errors / requests > min_error_rate:
                    found.append(ErrorMinute(key, minute, requests, errors))
        return sorted(found, key=lambda m: (m.minute_unix_ns, m.series))


def series_key(span: LLMSpan) -> SeriesKey:
    return (span.context.service or "?", span.model or "?",
            span.context.prompt_template_version or "-")
