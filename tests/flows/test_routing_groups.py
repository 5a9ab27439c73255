"""Routing with the shipped tier timing: an outage across 200 series, reported by 16 window
shards in their own order, becomes one page per service as soon as the slowest shard passed
the breaching minute (the shipped tier-1 group_wait is 0 s: waiting would only add latency)."""

from __future__ import annotations

import random
from pathlib import Path

from flows.steps import AlertRoutingLogic, RoutingState, Tick, group_policies
from rules.grouping import AlertGroup, Grouper
from rules.inhibition import Inhibitor
from rules.load import load_rules
from rules.records import AlertEvent
from tests.rules.test_lifecycle import MIN, event

SHIPPED = Path(__file__).resolve().parents[2] / "alerts.toml"
SHARDS = 16
SERVICES = ("chat", "search", "summarise", "agent")


def _routing() -> AlertRoutingLogic:
    rules = load_rules(SHIPPED)
    groupers = {tier: Grouper(policy, key=f"tier{tier}")
                for tier, policy in group_policies(rules).items()}
    inhibitor = Inhibitor(rules.inhibit)  # type: ignore[arg-type]  # as flows/pipeline.py
    return AlertRoutingLogic(RoutingState(inhibitor, groupers, shards=SHARDS))


def _outage(minute: int) -> list[AlertEvent]:
    """200 series (4 services x 50 models) of error-rate-high fire at the end of `minute`."""
    return [event(minute, labels=(("model", f"m{i:02d}"), ("service", SERVICES[i % 4])))
            for i in range(200)]


def test_a_minute_of_breaches_from_16_shards_pages_once_per_service_without_waiting() -> None:
    routing = _routing()
    events = _outage(10)
    minute_end = events[0].at_unix_ns
    by_shard: dict[str, list[AlertEvent]] = {f"w{s}": [] for s in range(SHARDS)}
    for i, e in enumerate(events):
        by_shard[f"w{i % SHARDS}"].append(e)
    rng = random.Random(7)
    sent: list[AlertGroup] = []
    shards = list(by_shard)
    rng.shuffle(shards)
    for position, shard in enumerate(shards):
        # Each shard sends its events then its tick for the minute, in its own batch.
        out, _ = routing.on_batch([*by_shard[shard], Tick(shard, minute_end)])
        groups = [o for o in out if isinstance(o, AlertGroup)]
        if position < SHARDS - 1:
            assert groups == [], "routing must wait for the slowest shard"
        sent += groups
    assert sorted(dict(g.labels)["service"] for g in sent) == sorted(SERVICES)
    assert all(g.tier == 1 and len(g.firing) == 50 and not g.is_storm_summary for g in sent)

    # The next minute's new breaches of the same groups wait for group_interval (5 m).
    later = [event(11, labels=(("model", "m99"), ("service", "chat")))]
    for s in range(SHARDS):
        out, _ = routing.on_batch([*(later if s == 0 else []),
                                   Tick(f"w{s}", later[0].at_unix_ns)])
        assert not any(isinstance(o, AlertGroup) for o in out)
    out, _ = routing.on_batch([Tick(f"w{s}", minute_end + 5 * MIN) for s in range(SHARDS)])
    (update,) = [o for o in out if isinstance(o, AlertGroup)]
    assert (dict(update.labels)["service"], update.is_update, len(update.firing)) == (
        "chat", True, 51)
