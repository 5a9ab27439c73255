"""Self-metrics of the flow (Prometheus counters, process-wide; exported by `spanwatch run`)."""

from __future__ import annotations

import threading
from collections import Counter as Counter_
from collections.abc import Mapping

from prometheus_client import Counter, Gauge

MESSAGES = Counter("spanwatch_messages_total", "Kafka messages read, by outcome",
                   ["outcome"])  # decoded | dead_lettered
SPANS = Counter("spanwatch_spans_total", "Spans kept after normalisation, by kind", ["kind"])
SPANS_DROPPED = Counter("spanwatch_spans_ignored_total",
                        "Spans that carry no metric (tool and framework spans)")
EVALS = Counter("spanwatch_evaluations_total", "Evaluation results read apart from their span")
UNKNOWN_COST = Counter("spanwatch_unknown_cost_spans_total",
                       "Model-call spans whose cost is unknown, by reason", ["reason"])
OPEN_TRACES = Gauge("spanwatch_open_traces", "Traces waiting for their root span")
TRACES_RELEASED_EARLY = Counter("spanwatch_traces_released_early_total",
                                "Traces released before the wait ran out (open-trace cap hit)")
LATE_RECORDS = Counter("spanwatch_late_records_total",
                       "Records behind the watermark: folded while their minute was open, or "
                       "too late (counted in the next closed minute)", ["verdict"])
CLOSED_MINUTES = Counter("spanwatch_closed_minutes_total", "Series-minutes closed")
ALERT_EVENTS = Counter("spanwatch_alert_events_total", "Alert lifecycle transitions",
                       ["state", "tier"])
ACTIVE_SERIES = Gauge("spanwatch_active_series", "Series with windows kept, by window shard",
                      ["shard"])
ALERTS = Gauge("spanwatch_alerts", "Alert instances by lifecycle state and tier (pending, "
               "firing), summed over the window shards of this process", ["state", "tier"])


# Alert counts per window shard, so shards of one process do not overwrite each other's.
_alerts_lock = threading.Lock()
_alerts_by_shard: dict[str, Mapping[tuple[str, int], int]] = {}


def set_shard_alerts(shard: str, counts: Mapping[tuple[str, int], int]) -> None:
    """Publish one window shard's alert instances by (state, tier); the gauge is the sum."""
    with _alerts_lock:
        _alerts_by_shard[shard] = counts
        total: Counter_[tuple[str, int]] = Counter_()
        for shard_counts in _alerts_by_shard.values():
            total.update(shard_counts)
    for state in ("pending", "firing"):
        for tier in (1, 2, 3):
            ALERTS.labels(state, str(tier)).set(total.get((state, tier), 0))
