"""Price table: snapshot names resolve to their family; overrides merge; bad tables are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pricing import PriceTable, PricingError


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


@pytest.mark.parametrize(("model", "family"), [
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("GPT-4o", "gpt-4o"),
    ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("models/gemini-1.5-pro", "gemini-1.5-pro"),
    ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("chatgpt-4o-latest", "gpt-4o"),
    ("o3-mini-2025-01-31", "o3-mini"),
])
def test_snapshot_names_resolve_to_their_family(table: PriceTable, model: str,
                                                family: str) -> None:
    assert table.resolve(model) == family


@pytest.mark.parametrize("model", ["acme-llm-9", "gpt", "my-gpt-4o"])
def test_unknown_models_resolve_to_nothing(table: PriceTable, model: str) -> None:
    assert table.resolve(model) is None


def test_cached_tokens_are_part_of_input_and_priced_lower(table: PriceTable) -> None:
    price = table.price_of("gpt-4o")
    assert price is not None
    assert price.cost_usd(1_000_000, 0, 0) == pytest.approx(2.5)
    assert price.cost_usd(1_000_000, 0, 1_000_000) == pytest.approx(1.25)
    assert price.cost_usd(0, 1_000_000, 0) == pytest.approx(10.0)


def test_user_file_overrides_and_extends_the_shipped_table(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text('[models."gpt-4o"]\ninput = 1.0\noutput = 2.0\n'
                        '[models."acme-llm"]\ninput = 3.0\noutput = 4.0\n'
                        '[aliases]\n"acme-large" = "acme-llm"\n')
    table = PriceTable.load(override)
    gpt = table.price_of("gpt-4o-2024-08-06")
    assert gpt is not None and (gpt.input_per_mtok, gpt.cached_input_per_mtok) == (1.0, 1.0)
    assert table.resolve("acme-llm-2025-01-01") == "acme-llm"
    assert table.resolve("acme-large") == "acme-llm"


@pytest.mark.parametrize(("text", "message"), [
    ('[models."x"]\ninput = -1\noutput = 1\n',
     'models."x".input is -1; expected a price >= 0 in USD per 1M tokens'),
    ('[models."x"]\ninput = 1\noutput = 1\nouput = 2\n',
     "models.\"x\": unknown key(s) ['ouput']; expected input, output, cached_input"),
    ('[aliases]\n"y" = "nowhere"\n', 'aliases."y" points to "nowhere", which has no price'),
])
def test_bad_price_tables_name_the_entry(tmp_path: Path, text: str, message: str) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(text)
    with pytest.raises(PricingError) as error:
        PriceTable.load(override)
    assert str(error.value) == f"{override}: {message}"
