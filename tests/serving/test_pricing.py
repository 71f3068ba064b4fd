"""Prices from the genai-prices catalogue, given prices, and unknown prices shown as unknown."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from datamill import AnthropicLLMServing, APILLMServing_request
from datamill.serving.pricing import BATCH_DISCOUNT, Price, Tier, find_price, resolve_price
from datamill.serving.types import GenericResponse
from datamill.ui.progress import format_cost
from datamill.ui.tables import summary_table
from tests.serving.serving_helpers import FAST_RETRY, OneStepPipeline, write_rows


def test_exact_names_and_dated_snapshots_are_priced_and_nothing_fuzzier() -> None:
    mini = find_price("gpt-4o-mini", "openai")
    assert mini is not None and (mini.input, mini.output) == (0.15, 0.60)
    assert mini.source.startswith("genai-prices ")
    assert find_price("gpt-4o-mini-2024-07-18", "openai") == mini
    assert (
        find_price("gpt-4o-mini-2025-12-31", "openai") == mini
    )  # a snapshot the catalogue has not listed yet
    sonnet = find_price("claude-sonnet-4-5", "anthropic")
    assert sonnet is not None and (sonnet.input, sonnet.output) == (3.0, 15.0)
    assert find_price("claude-sonnet-4-5-20250929", "anthropic") == sonnet
    assert find_price("claude-3-5-haiku-latest", "anthropic") is not None
    # A misspelt name is not its neighbour's: genai-prices alone would match these by prefix.
    for name in ("gpt-4o-minii", "gpt-4oops", "claude-sonnet-4-5x", "claude-sonnet-4-55"):
        assert find_price(name, "openai") is None and find_price(name, "anthropic") is None, name
    assert find_price("my-local-llama", "openai") is None
    assert find_price("gpt-4o", "anthropic") is None  # another provider's model
    assert find_price("gpt-4o", "local-vllm") is None  # a provider the catalogue does not cover


def test_batch_responses_cost_the_catalogues_batch_price_or_the_documented_discount() -> None:
    mini = find_price("gpt-4o-mini", "openai")
    assert mini is not None and mini.batch is not None
    assert mini.cost(1_000_000, 1_000_000, offline=True) == pytest.approx(0.375)  # 0.075 + 0.30
    # An older model the catalogue has no batch price for: Anthropic's documented 50%.
    haiku = find_price("claude-3-haiku-20240307", "anthropic")
    assert haiku is not None
    online = haiku.cost(2_000, 1_000)
    assert haiku.cost(2_000, 1_000, offline=True) == pytest.approx(online * BATCH_DISCOUNT) and online > 0


def test_long_context_tiers_price_the_whole_request_at_the_tier_rate() -> None:
    price = Price(3.0, 15.0, tiers=(Tier(200_000, 6.0, 22.5),))
    assert price.cost(200_000, 1_000) == pytest.approx((200_000 * 3.0 + 1_000 * 15.0) / 1e6)
    assert price.cost(200_001, 1_000) == pytest.approx((200_001 * 6.0 + 1_000 * 22.5) / 1e6)


def test_a_given_price_wins_and_typos_in_it_are_config_errors() -> None:
    serving = APILLMServing_request(
        "http://127.0.0.1:1/v1", "gpt-4o-minii", price_per_million={"input": 1.0, "output": 4.0}
    )
    response = GenericResponse(["x"], prompt_tokens=1_000_000, completion_tokens=500_000)
    assert serving.cost_usd(response) == pytest.approx(3.0)
    offline = GenericResponse(["x"], prompt_tokens=1_000_000, completion_tokens=500_000, offline=True)
    assert serving.cost_usd(offline) == pytest.approx(1.5)
    with_batch = resolve_price("m", {"input": 1.0, "output": 4.0, "batch_input": 0.1, "batch_output": 0.2})
    assert with_batch is not None and with_batch.cost(1_000_000, 1_000_000, offline=True) == pytest.approx(
        0.3
    )
    serving.price = Price(10.0, 10.0)  # a Price object may be assigned too
    assert serving.cost_usd(response) == pytest.approx(15.0)
    from datamill.errors import ConfigError

    for bad in ({}, {"input": 1.0}, {"input": 1.0, "ouput": 2.0}, {"input": "cheap", "output": 1.0}):
        with pytest.raises(ConfigError, match="price_per_million"):
            APILLMServing_request("http://127.0.0.1:1/v1", "m", price_per_million=bad)


def test_unknown_and_misspelt_models_cost_unknown_with_one_warning_each(
    sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="datamill.serving.pricing")
    serving = APILLMServing_request(sim.openai_base, "gpt-4o-minii", max_workers=4, retry=FAST_RETRY)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 20), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=5)
    assert summary.steps[0].rows_out == 20 and sim.stats()["answered"] == 20
    assert summary.cost_usd is None and summary.steps[0].cost_usd is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "'gpt-4o-minii'" in warnings[0] and "price_per_million" in warnings[0]
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    text = console.export_text()
    assert "—" in text and "$0" not in text

    # The next run warns again (once), and a model nobody prices is unknown too.
    caplog.clear()
    other = APILLMServing_request(sim.openai_base, "my-local-llama", max_workers=4, retry=FAST_RETRY)
    again = OneStepPipeline(tmp_path / "in.jsonl", tmp_path / "other", other).forward(batch_size=5)
    assert again.cost_usd is None
    assert [r.getMessage().count("'my-local-llama'") for r in caplog.records] == [1]


def test_a_misspelt_model_with_a_given_price_is_billed_at_that_price(sim, tmp_path: Path) -> None:
    serving = APILLMServing_request(
        sim.openai_base,
        "gpt-4o-minii",
        max_workers=4,
        retry=FAST_RETRY,
        price_per_million={"input": 2.0, "output": 8.0},
    )
    summary = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 20), tmp_path / "cache", serving).forward()
    stats = sim.stats()
    expected = (stats["prompt_tokens"] * 2.0 + stats["completion_tokens"] * 8.0) / 1e6
    assert summary.cost_usd == pytest.approx(expected, rel=1e-9) and expected > 0


def test_anthropic_serving_finds_claude_prices(sim) -> None:
    serving = AnthropicLLMServing(sim.anthropic_base, "claude-haiku-4-5-20251001")
    assert serving.price is not None and (serving.price.input, serving.price.output) == (1.0, 5.0)


def test_format_cost_shows_unknown_as_a_dash_never_zero() -> None:
    assert format_cost(None) == "—"
    assert format_cost(0.0) == "$0.0000" and format_cost(1234.5) == "$1,234.50"


def test_the_catalogue_is_read_without_a_network() -> None:
    code = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network used")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        from datamill.serving.pricing import find_price

        price = find_price("gpt-4o-mini", "openai")
        assert price is not None and price.input == 0.15, price
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
