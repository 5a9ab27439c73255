"""Pre-aggregation gives each rule family's series only what its rules read.

A span's session touch and sketch values used to reach every series the span folds into
(nine under the shipped rules), each merging touches per minute and adding ~4 sketch values,
while only the `service` family reads sessions and most families read one sketch or none.
Now a family's series get session touches only when a rule on it reads a session metric, and
only the sketches its rules read (`catalog.reads`); everything else is unchanged.
"""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.pipeline import Preaggregator
from ingest.span import LLMSpan
from metrics.bucket import ALL_SKETCHES, SKETCHES, Bucket, masked_plans, plan_of, sketch_mask
from metrics.catalog import SESSION_METRICS, reads
from metrics.partial import LabelKeys, Partial, SeriesNeeds, fold_planned, preaggregate_slots
from rules.config import RulesConfig
from rules.families import families, family_of, series_needs
from rules.load import load_rules, parse_rules
from tests.fakes.needs import without_sketches
from tests.fakes.rules_toml import CONSOLE_TIERS
from tests.flows.test_batched_steps import _traces
from tests.metrics.strategies import spans
from tests.metrics.test_fold_plans import crowded_spans

SHIPPED = Path(__file__).resolve().parents[2] / "alerts.toml"

_RULES = CONSOLE_TIERS + """
[[rules]]
name = "session-cost"
tier = 1
metric = "cost_per_session_max"
group_by = ["service"]
over = "1h"
when = "> 1"
runbook = "Test rule: the one family that needs sessions."

[[rules]]
name = "slow"
tier = 1
metric = "llm_latency_p95"
group_by = ["service", "user_segment"]
over = "5m"
when = "> 10"
runbook = "Test rule: a family that reads one sketch and no session."
"""


def _config() -> RulesConfig:
    return parse_rules(_RULES, "t.toml")


# --- which families need what ---------------------------------------------------------------

def test_the_shipped_rules_give_each_family_what_its_rules_read() -> None:
    config = load_rules(SHIPPED)
    every = families(config)
    needs = series_needs(config, every)
    for family, need in zip(every, needs, strict=True):
        rules = [rule for rule in config.rules if family_of(rule) == family]
        assert need.sessions == any(rule.metric in SESSION_METRICS for rule in rules)
        wanted = {name for rule in rules for name in reads(rule.metric)} & set(SKETCHES)
        assert {SKETCHES[i] for i in range(len(SKETCHES)) if need.sketches >> i & 1} == wanted
    # what makes it worth it: few families read sessions, none reads every sketch
    assert [f.group_by for f, n in zip(every, needs, strict=True) if n.sessions] == [("service",)]
    assert all(need.sketches != ALL_SKETCHES for need in needs)
    assert sum(bin(need.sketches).count("1") for need in needs) < len(every)


def test_without_session_rules_no_family_gets_sessions() -> None:
    config = parse_rules(_RULES.replace("cost_per_session_max", "cost_per_request"), "t.toml")
    assert [need.sessions for need in series_needs(config, families(config))] == [False, False]


def test_a_needs_entry_per_key_function_is_required() -> None:
    functions = [family.key_of for family in families(_config())]
    try:
        LabelKeys(functions, needs=[SeriesNeeds()])
    except ValueError as error:
        assert "1 entries for 2 key functions" in str(error)
    else:
        raise AssertionError("a missing entry was accepted")


# --- folding only some sketches ---------------------------------------------------------------

_masks = st.sampled_from([0, 1, 8, 98, 128, ALL_SKETCHES]) | st.integers(0, ALL_SKETCHES)


@settings(max_examples=120, deadline=None)
@given(st.lists(crowded_spans() | spans(), max_size=40), _masks)
def test_folding_with_a_sketch_mask_is_folding_everything_without_the_other_sketches(
        batch: list[LLMSpan], sketches: int) -> None:
    plans = [plan_of(span) for span in batch]
    everything, at_once, one_by_one, planned = Bucket(), Bucket(), Bucket(), Bucket()
    everything.fold_plans(plans)
    at_once.fold_plans(plans, sketches=sketches)
    for plan in masked_plans(plans, sketches):
        one_by_one.fold_plan(plan)
    fold_planned(planned, plans, sketches=sketches)
    want = without_sketches(everything, sketches).to_state()
    assert at_once.to_state() == want
    assert one_by_one.to_state() == want
    assert planned.to_state() == want


def test_masked_plans_keep_plans_that_lose_nothing() -> None:
    plans = [plan_of(span) for span in _traces(random.Random(1), 5, 10)
             if isinstance(span, LLMSpan)]
    assert all(a is b for a, b in zip(masked_plans(plans, ALL_SKETCHES), plans, strict=True))
    assert all(not plan.sketch_keys for plan in masked_plans(plans, 0))
    assert any(plan.sketch_keys for plan in plans)


# --- pre-aggregation ---------------------------------------------------------------------------

def _bucket(partial: Partial) -> Bucket:
    return partial.bucket


def test_each_series_gets_the_partials_of_everything_less_what_it_does_not_read() -> None:
    records = _traces(random.Random(3), 400, 240)
    functions = [family.key_of for family in families(_config())]
    needs = [SeriesNeeds(sessions=True, sketches=sketch_mask(["latency_s"])),
             SeriesNeeds(sessions=False, sketches=sketch_mask(["llm_latency_s", "ttft_s"]))]
    everything = preaggregate_slots(records, LabelKeys(functions))
    keys_of = LabelKeys(functions, needs=needs)
    only = preaggregate_slots(records, keys_of)
    assert len(only) == len(everything)
    touched = dropped = folded = planned = 0
    for (slot_id, partial), (_, reference) in zip(only, everything, strict=True):
        need = needs[keys_of.ids.slot_keys[slot_id][0]]
        assert (partial.key, partial.minute_start_unix_ns) == \
            (reference.key, reference.minute_start_unix_ns)
        assert (partial.folded is None) == (reference.folded is None)
        folded += partial.folded is not None
        planned += partial.folded is None
        assert _bucket(partial) == without_sketches(_bucket(reference), need.sketches)
        if need.sessions:
            assert partial.sessions == reference.sessions
            touched += len(partial.sessions)
        else:
            assert partial.sessions == ()
            dropped += len(reference.sessions)
    # not vacuous: both kinds of partials, and sessions on both sides
    assert folded > 0 and planned > 0
    assert touched > 0 and dropped > 0


def test_the_flow_preaggregator_gives_sessions_and_sketches_by_the_rules() -> None:
    config = _config()
    records = _traces(random.Random(5), 300, 120)
    partials = [partial for _, partial in Preaggregator(lambda: config).partials(records)]
    by_family = {1: [p for p in partials if len(p.key) == 1],
                 2: [p for p in partials if len(p.key) == 2]}
    assert by_family[1] and by_family[2]
    assert any(p.sessions for p in by_family[1])
    assert not any(p.sessions for p in by_family[2])
    slow = SKETCHES.index("llm_latency_s")
    assert any(_bucket(p).sketches[slow] is not None for p in by_family[2])
    for p in by_family[2]:
        assert [i for i, s in enumerate(_bucket(p).sketches) if s is not None] in ([], [slow])
    for p in by_family[1]:
        assert all(s is None for s in _bucket(p).sketches)
