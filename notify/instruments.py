"""Self-metrics of notification delivery (Prometheus, process-wide; served by `spanwatch run`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NOTIFICATIONS = Counter("spanwatch_notifications_total",
                        "Delivery attempts by receiver and outcome (sent, retried, failed)",
                        ["receiver", "outcome"])
OUTBOX_DEPTH = Gauge("spanwatch_outbox_pending", "Notifications waiting in the outbox",
                     ["receiver"])
