"""Records between rule evaluation, the alert lifecycle and notification.

`Evaluation`: one rule checked on one series at one closed window (event time). `AlertEvent`:
a lifecycle transition of one alert instance (fingerprint = rule + series labels) that a
receiver may have to hear about.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from metrics.cost_mix import CostWindows

Labels = tuple[tuple[str, str], ...]
"""Sorted (name, value) pairs: the series labels plus a rule's extra labels."""

AlertState = Literal["inactive", "pending", "firing", "resolved"]


def fingerprint(rule: str, labels: Labels) -> str:
    """Stable id of an alert instance: the same rule on the same series, across restarts and
    processes (it becomes the PagerDuty dedup key and the Slack thread key)."""
    canonical = json.dumps([rule, [list(pair) for pair in sorted(labels)]], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A rule checked on one series for the window ending at `at_unix_ns` (event time)."""

    rule: str
    tier: int
    labels: Labels
    at_unix_ns: int
    window_s: float
    is_breach: bool
    value: float | None
    """The metric value; None when the window had no data for it (no decision possible)."""
    threshold: float | None = None
    """The bound crossed (threshold rules) ..."""
    baseline: float | None = None
    """... or the baseline compared with (detector rules), with its spread."""
    spread: float | None = None
    anomaly: float | None = None
    samples: int = 0
    """Requests (or evaluations) behind the value, for minimum-sample gating."""
    is_gated: bool = False
    """True when too few samples: neither a breach nor a recovery."""
    exemplar_trace_ids: tuple[str, ...] = ()
    versions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Live versions in the window: (("prompt_template_version", (...)), ("model", (...)), ...)."""
    changed: tuple[str, ...] = ()
    """Which of those changed near the onset (e.g. "prompt_template_version")."""
    detail: str = ""
    cost: CostWindows | None = None
    """Cost rules' breaches: usage per model in the window and the baseline window, for the
    attribution of the change in notifications."""

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_unix_ns / 1e9, tz=UTC)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.labels)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A transition of one alert instance that notification may act on."""

    fingerprint: str
    rule: str
    tier: int
    labels: Labels
    state: AlertState
    previous: AlertState
    at_unix_ns: int
    """Event time of the transition."""
    started_at_unix_ns: int
    """When the instance became pending (onset) for firing/resolved events."""
    evaluation: Evaluation
    """The evaluation that caused the transition (value, threshold/baseline, exemplars...)."""
    is_repeat: bool = False
    """A reminder of a still-firing alert after `repeat_interval`."""
    suppressed_by: tuple[str, ...] = field(default=())
    """Why it must not notify: inhibiting alert fingerprints or silence ids (kept for audit)."""

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_unix_ns / 1e9, tz=UTC)
