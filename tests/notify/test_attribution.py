"""Cost attribution (LMDI-I): each factor's share of a cost change, exactly additive."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import notify.attribution
from notify.attribution import CostAggregate, Factor, ModelUsage, attribute_cost


def usage(model: str = "gpt-4o", *, requests: float = 100, input_tokens: float = 50_000,
          cached: float = 0, output: float = 20_000, price_in: float = 2.5,
          price_cached: float = 1.25, price_out: float = 10.0) -> ModelUsage:
    return ModelUsage(model, requests, input_tokens, cached, output, price_in, price_cached,
                      price_out)


def shares(a: CostAggregate, b: CostAggregate) -> dict[Factor, float]:
    result = attribute_cost(a, b)
    return {s.factor: round(s.share_ratio or 0.0, 9) for s in result.shares
            if s.share_ratio and abs(s.share_ratio) > 1e-12}


def test_the_doctest_runs() -> None:
    assert doctest.testmod(notify.attribution).failed == 0


def test_twice_the_traffic_is_all_request_volume() -> None:
    base = CostAggregate((usage(),))
    now = CostAggregate((usage(requests=200, input_tokens=100_000, output=40_000),))
    assert shares(base, now) == {"request_volume": 1.0}


def test_longer_prompts_are_tokens_per_request() -> None:
    base = CostAggregate((usage(input_tokens=50_000, output=50_000),))
    now = CostAggregate((usage(input_tokens=100_000, output=100_000),))
    assert shares(base, now) == {"tokens_per_request": 1.0}


def test_a_price_rise_is_price() -> None:
    base = CostAggregate((usage(),))
    now = CostAggregate((usage(price_in=5.0, price_out=20.0),))
    assert shares(base, now) == {"price": 1.0}


def test_more_output_for_the_same_total_tokens_is_the_token_mix() -> None:
    base = CostAggregate((usage(input_tokens=60_000, output=10_000),))
    now = CostAggregate((usage(input_tokens=40_000, output=30_000),))
    assert shares(base, now) == {"token_mix": 1.0}


def test_cached_tokens_appearing_are_the_token_mix() -> None:
    base = CostAggregate((usage(input_tokens=60_000, cached=0),))
    now = CostAggregate((usage(input_tokens=30_000, cached=30_000),))
    result = shares(base, now)
    assert set(result) == {"token_mix"}
    assert math.isclose(result["token_mix"], 1.0)


def test_a_new_model_taking_traffic_is_the_model_mix() -> None:
    cheap = usage("gpt-4o-mini", requests=100, price_in=0.15, price_cached=0.075, price_out=0.6)
    base = CostAggregate((cheap,))
    now = CostAggregate((usage("gpt-4o-mini", requests=50, input_tokens=25_000, output=10_000,
                               price_in=0.15, price_cached=0.075, price_out=0.6),
                         usage("gpt-4o", requests=50, input_tokens=25_000, output=10_000)))
    assert shares(base, now) == {"model_mix": 1.0}


def test_mixed_changes_add_up_exactly_and_rank_in_the_lines() -> None:
    base = CostAggregate((usage(),))
    now = CostAggregate((usage(requests=110, input_tokens=110_000, output=33_000, price_in=3.0),))
    result = attribute_cost(base, now)
    assert math.isclose(sum(s.change_usd for s in result.shares), result.change_usd)
    assert math.isclose(sum(s.share_ratio or 0 for s in result.shares), 1.0)
    lines = result.lines()
    assert lines[0].startswith("cost $0.325 -> $0.66 (+$0.335), LMDI-I additive:")
    assert lines[1].startswith("tokens per request: +$")  # the largest contribution first


def test_no_change_has_no_shares() -> None:
    base = CostAggregate((usage(),))
    result = attribute_cost(base, base)
    assert result.change_usd == 0
    assert all(s.share_ratio is None and s.change_usd == 0 for s in result.shares)


def test_negative_usage_is_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match=r"ModelUsage\('m'\)\.requests = -1: expected"):
        usage("m", requests=-1)


positive = st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False)
maybe_zero = st.one_of(st.just(0.0), positive)
price = st.floats(min_value=0.01, max_value=100.0)
model_usage = st.builds(ModelUsage, st.sampled_from(["a", "b", "c"]), positive, maybe_zero,
                        maybe_zero, maybe_zero, price, price, price)  # positional: the fields
aggregate = st.lists(model_usage, min_size=1, max_size=3, unique_by=lambda m: m.model).map(
    lambda ms: CostAggregate(tuple(ms)))


@given(aggregate, aggregate)
def test_contributions_always_sum_to_the_cost_change(a: CostAggregate, b: CostAggregate) -> None:
    """LMDI-I is a perfect decomposition: no residual, zero values included."""
    result = attribute_cost(a, b)
    total = sum(s.change_usd for s in result.shares)
    assert math.isclose(total, result.change_usd, rel_tol=1e-6,
                        abs_tol=1e-9 * max(1.0, a.cost_usd, b.cost_usd))
