"""Token counts + model -> cost in USD, from an editable price table (TOML, USD per 1M tokens).

An explicit cost attribute on the span wins over the table (see `normalise.py`). A model found
nowhere gives an unknown cost with a reason, never a silent zero.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

_DATE_SUFFIX = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}))(?:-v\d+(?::\d+)?)?$")
_BEDROCK_VENDOR = re.compile(r"^(?:[a-z]{2}\.)?(?:anthropic|meta|mistral|cohere|amazon)\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")


class PricingError(ValueError):
    """A price table that cannot be used; the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per one million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float

    def cost_usd(self, input_tokens: int, output_tokens: int, cached_input_tokens: int) -> float:
        # Providers report cached tokens as part of the input tokens (OTel GenAI conventions
        # say the same), so only the uncached rest pays the full input price.
        cached = min(cached_input_tokens, input_tokens)
        return (
            (input_tokens - cached) * self.input_per_mtok
            + cached * self.cached_input_per_mtok
            + output_tokens * self.output_per_mtok
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: dict[str, ModelPrice]
    aliases: dict[str, str]
    _found: dict[str, ModelPrice | None] = field(default_factory=dict, compare=False,
                                                 repr=False)
    """`price_of` per model name seen: the same few names come on every span."""

    @classmethod
    def load(cls, override: Path | None = None) -> PriceTable:
        """The shipped table, with `override` (same layout) merged over it."""
        shipped = resources.files("ingest").joinpath("pricing.toml").read_text()
        table = _parse(tomllib.loads(shipped), "ingest/pricing.toml")
        if override is None:
            return table
        try:
            doc = tomllib.loads(override.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PricingError(f"{override}: cannot read price table: {exc}") from None
        extra = _parse(doc, str(override))
        merged = PriceTable({**table.prices, **extra.prices}, {**table.aliases, **extra.aliases})
        for alias, target in merged.aliases.items():
            if target not in merged.prices:
                raise PricingError(f'{override}: aliases."{alias}" points to "{target}", '
                                   "which has no price")
        return merged

    def resolve(self, model: str) -> str | None:
        """The table key a model name prices as, or None when the model is unknown."""
        name = model.strip().lower()
        name = name.rsplit("/", 1)[-1]  # "openai/gpt-4o", "models/gemini-1.5-pro"
        if _BEDROCK_VENDOR.match(name):
            name = _BEDROCK_VERSION.sub("", _BEDROCK_VENDOR.sub("", name))
        for candidate in (name, _DATE_SUFFIX.sub("", name)):
            if candidate in self.aliases:
                return self.aliases[candidate]
            if candidate in self.prices:
                return candidate
        # Family prefix: the longest priced name followed by "-" or "@" (gpt-4o-mini-2024-07-18
        # -> gpt-4o-mini, never gpt-4o).
        best = None
        for key in self.prices:
            if name.startswith((key + "-", key + "@", key + ":")) and (
                best is None or len(key) > len(best)
            ):
                best = key
        return best

    def price_of(self, model: str) -> ModelPrice | None:
        found = self._found.get(model, _UNSEEN)
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        key = self.resolve(model)
        price = None if key is None else self.prices[key]
        if len(self._found) < 10_000:  # bounded: model names come from the traffic
            self._found[model] = price
        return price


_UNSEEN = object()


def _parse(doc: dict[str, Any], source: str) -> PriceTable:
    models = doc.get("models", {})
    if not isinstance(models, dict):
        raise PricingError(f"{source}: [models] must be a table")
    prices: dict[str, ModelPrice] = {}
    for name, entry in models.items():
        where = f'{source}: models."{name}"'
        if not isinstance(entry, dict):
            raise PricingError(f"{where} must be a table with input and output")
        unknown = set(entry) - {"input", "output", "cached_input"}
        if unknown:
            raise PricingError(f"{where}: unknown key(s) {sorted(unknown)}; "
                               "expected input, output, cached_input")
        values = {}
        for key in ("input", "output", "cached_input"):
            value = entry.get(key, entry.get("input") if key == "cached_input" else None)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PricingError(f"{where}.{key} is {value!r}; expected a price >= 0 "
                                   "in USD per 1M tokens")
            values[key] = float(value)
        prices[name.lower()] = ModelPrice(values["input"], values["output"],
                                          values["cached_input"])
    aliases = doc.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise PricingError(f"{source}: [aliases] must map model names to priced model names")
    return PriceTable(prices, {k.lower(): v.lower() for k, v in aliases.items()})
