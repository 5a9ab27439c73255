"""Cost attribution: which factor explains a change in LLM spend between two aggregates.

In: a baseline and a current `CostAggregate` (plain numbers per model). Out: a
`CostAttribution` giving the share of the cost change explained by request volume, tokens per
request, the input/cached/output token mix, price per token and the model mix.

Method: additive LMDI-I (log-mean Divisia index, Ang 2004, "Decomposition analysis for
policymaking in energy", Energy Policy 32). Cost is written as a sum of products of factors,

    C = sum over models m and token types k of  R * s_m * T_m * q_mk * p_mk

with R the requests, s_m = R_m / R the model mix, T_m the tokens per request of model m,
q_mk = tokens_mk / tokens_m the token-type mix and p_mk the price per token. Each term's change
is split as L(C1, C0) * ln(x1 / x0) per factor x, with L the logarithmic mean; the parts add up
to the whole change exactly (no residual), unlike a sequential decomposition, whose result
depends on the order the factors are changed in.

Zero values (a model new in the window, cached tokens appearing, a free tier) are handled with
the analytical limit of the usual small-value substitution (Ang & Liu 2007, "Handling zero
values in the LMDI decomposition"): a term that is zero in one period is attributed wholly to
the factor(s) that are zero there, and a factor that is undefined in one period (tokens per
request of a model that served no requests) takes its value from the other period.

Both aggregates should cover the same duration (or be normalised to it) so that request volume
compares rates, e.g. the alert window and the same window of the baseline day.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ingest.pricing import PriceTable
from metrics.cost_mix import CostWindows, ModelCost

Factor = Literal["request_volume", "tokens_per_request", "token_mix", "price", "model_mix"]

FACTORS: tuple[Factor, ...] = (
    "request_volume", "tokens_per_request", "token_mix", "price", "model_mix")

FACTOR_LABELS: dict[Factor, str] = {
    "request_volume": "request volume",
    "tokens_per_request": "tokens per request",
    "token_mix": "input/output/cached mix",
    "price": "price per token",
    "model_mix": "model mix",
}

_TOKEN_TYPES = ("input", "cached_input", "output")


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """One model's usage over a period. Prices are USD per one million tokens (as in
    `ingest/pricing.toml`); `input_tokens` are those billed at the full input rate, i.e.
    without the cached ones."""

    model: str
    requests: float
    input_tokens: float
    cached_input_tokens: float
    output_tokens: float
    input_usd_per_mtok: float
    cached_input_usd_per_mtok: float
    output_usd_per_mtok: float

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if name != "model" and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ModelUsage({self.model!r}).{name} = {value!r}: "
                                 "expected a finite number >= 0")

    def tokens(self, kind: str) -> float:
        return float(getattr(self, f"{kind}_tokens"))

    def price_usd_per_token(self, kind: str) -> float:
        return float(getattr(self, f"{kind}_usd_per_mtok")) / 1e6

    @property
    def cost_usd(self) -> float:
        return sum(self.tokens(k) * self.price_usd_per_token(k) for k in _TOKEN_TYPES)


@dataclass(frozen=True, slots=True)
class CostAggregate:
    """Usage of every model over one period (the baseline or the current window)."""

    models: tuple[ModelUsage, ...]

    @property
    def requests(self) -> float:
        return sum(m.requests for m in self.models)

    @property
    def cost_usd(self) -> float:
        return sum(m.cost_usd for m in self.models)


@dataclass(frozen=True, slots=True)
class FactorShare:
    """How much of the cost change one factor explains."""

    factor: Factor
    change_usd: float
    share_ratio: float | None
    """change_usd / total change (signed; shares add up to 1); None when the total is 0."""


@dataclass(frozen=True, slots=True)
class CostAttribution:
    """The cost change between two periods split by factor (LMDI-I, additive)."""

    baseline_cost_usd: float
    current_cost_usd: float
    shares: tuple[FactorShare, ...]
    method: str = "LMDI-I additive"

    @property
    def change_usd(self) -> float:
        return self.current_cost_usd - self.baseline_cost_usd

    def lines(self) -> tuple[str, ...]:
        """Human lines, largest contribution first, e.g. "tokens per request: +$1.20 (80%)"."""
        ranked = sorted(self.shares, key=lambda s: abs(s.change_usd), reverse=True)
        head = (f"cost ${self.baseline_cost_usd:,.4g} -> ${self.current_cost_usd:,.4g} "
                f"({_signed_usd(self.change_usd)}), {self.method}:")
        body = tuple(
            f"{FACTOR_LABELS[s.factor]}: {_signed_usd(s.change_usd)}"
            + (f" ({s.share_ratio:.0%})" if s.share_ratio is not None else "")
            for s in ranked)
        return (head, *body)


def _signed_usd(value: float) -> str:
    sign = "-" if value < 0 else "+"
    return f"{sign}${abs(value):,.4g}"


def _log_mean(a: float, b: float) -> float:
    """Logarithmic mean L(a, b) = (a - b) / (ln a - ln b), with L(a, a) = a."""
    if math.isclose(a, b, rel_tol=1e-12):
        return a
    return (a - b) / (math.log(a) - math.log(b))


def _factors(usage: ModelUsage | None, total_requests: float, kind: str
             ) -> dict[Factor, float | None]:
    """Factor values of one (model, token type) term; None where undefined (0/0)."""
    if usage is None:
        return {"request_volume": total_requests, "model_mix": 0.0 if total_requests else None,
                "tokens_per_request": None, "token_mix": None, "price": None}
    model_tokens = sum(usage.tokens(k) for k in _TOKEN_TYPES)
    return {
        "request_volume": total_requests,
        "model_mix": usage.requests / total_requests if total_requests else None,
        "tokens_per_request": model_tokens / usage.requests if usage.requests else None,
        "token_mix": usage.tokens(kind) / model_tokens if model_tokens else None,
        "price": usage.price_usd_per_token(kind),
    }


def attribute_cost(baseline: CostAggregate, current: CostAggregate) -> CostAttribution:
    """Split the cost change from `baseline` to `current` over the five factors (LMDI-I).

    >>> def usage(requests, output_tokens):
    ...     return CostAggregate((ModelUsage("m", requests, 100 * requests, 0, output_tokens,
    ...                                      1.0, 0.5, 4.0),))
    >>> a = attribute_cost(usage(100, 5_000), usage(200, 10_000))  # twice the traffic
    >>> [(s.factor, round(s.share_ratio, 6)) for s in a.shares if s.share_ratio]
    [('request_volume', 1.0)]
    """
    before = {m.model: m for m in baseline.models}
    after = {m.model: m for m in current.models}
    r0, r1 = baseline.requests, current.requests
    totals: dict[Factor, float] = dict.fromkeys(FACTORS, 0.0)
    for model in sorted(before.keys() | after.keys()):
        u0, u1 = before.get(model), after.get(model)
        for kind in _TOKEN_TYPES:
            c0 = u0.tokens(kind) * u0.price_usd_per_token(kind) if u0 else 0.0
            c1 = u1.tokens(kind) * u1.price_usd_per_token(kind) if u1 else 0.0
            if c0 == 0 and c1 == 0:
                continue
            f0, f1 = _factors(u0, r0, kind), _factors(u1, r1, kind)
            for factor in FACTORS:  # undefined in one period: no change in that factor
                x0, x1 = f0[factor], f1[factor]
                if x0 is None:
                    f0[factor] = x1
                elif x1 is None:
                    f1[factor] = x0
            if c0 > 0 and c1 > 0:
                weight = _log_mean(c1, c0)
                for factor in FACTORS:
                    x0, x1 = f0[factor], f1[factor]
                    assert x0 is not None and x1 is not None  # both periods have the term
                    totals[factor] += weight * math.log(x1 / x0)
            else:  # the limit of LMDI with a vanishing value: all to the factors that vanish
                zero_side = f0 if c0 == 0 else f1
                # A product of non-negative factors is zero only if one is; underflow aside.
                vanished = [f for f in FACTORS if not zero_side[f]] or ["model_mix"]
                for factor in vanished:
                    totals[factor] += (c1 - c0) / len(vanished)
    change = current.cost_usd - baseline.cost_usd
    shares = tuple(
        FactorShare(f, totals[f], totals[f] / change if change else None) for f in FACTORS)
    return CostAttribution(baseline.cost_usd, current.cost_usd, shares)


# --- from the usage an alert carries -----------------------------------------------------------


def _usage(m: ModelCost, prices: PriceTable | None) -> ModelUsage:
    """A `ModelUsage` whose cost equals the observed cost of `m`.

    The buckets keep one cost per model, not one per token type; the type split comes from the
    price table's relative prices, scaled so the total matches what was observed (so a changed
    table or explicit cost attributes show as a price change). A model the table lacks gets one
    blended price per token; calls without token counts count as one unit each.
    """
    cached = min(m.cached_input_tokens, m.input_tokens)
    uncached, output = m.input_tokens - cached, m.output_tokens
    listed = prices.price_of(m.model) if prices is not None and m.model else None
    list_cost = (uncached * listed.input_per_mtok + cached * listed.cached_input_per_mtok
                 + output * listed.output_per_mtok) / 1e6 if listed is not None else 0.0
    if listed is not None and list_cost > 0:
        k = m.cost_usd / list_cost
        rates = (listed.input_per_mtok * k, listed.cached_input_per_mtok * k,
                 listed.output_per_mtok * k)
    else:
        tokens = uncached + cached + output
        if tokens <= 0:  # cost without token counts: one unit per call
            uncached, cached, output, tokens = 0.0, 0.0, m.calls, m.calls
        blended = m.cost_usd / tokens * 1e6 if tokens > 0 else 0.0
        rates = (blended, blended, blended)
    return ModelUsage(m.model, m.calls, uncached, cached, output, *rates)


def _summed(rows: Iterable[ModelCost]) -> tuple[ModelCost, ...]:
    by_model: dict[str, list[float]] = {}
    for m in rows:
        total = by_model.setdefault(m.model, [0.0] * 5)
        for i, value in enumerate((m.calls, m.input_tokens, m.cached_input_tokens,
                                   m.output_tokens, m.cost_usd)):
            total[i] += value
    return tuple(ModelCost(model, *values) for model, values in sorted(by_model.items()))


def attribution_of(windows: Sequence[CostWindows], prices: PriceTable | None = None
                   ) -> CostAttribution | None:
    """The attribution of the cost change that the alerts' `CostWindows` show (summed over the
    series of a group), or None without usage. Rates compare: each baseline is already scaled
    to its alert's window."""
    if not windows:
        return None
    current = _summed(m for w in windows for m in w.current)
    baseline = _summed(m for w in windows for m in w.baseline)
    if not current or not baseline:
        return None
    return attribute_cost(CostAggregate(tuple(_usage(m, prices) for m in baseline)),
                          CostAggregate(tuple(_usage(m, prices) for m in current)))
