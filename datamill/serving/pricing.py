"""Model prices in USD per 1M tokens, for cost accounting and ``max_cost_usd``.

Prices as of 2025-11-01, from the providers' public list prices (standard tier, no cached-input
discount). They change: override them per serving with
``price_per_million={"input": 2.5, "output": 10.0}``. Offline (Batch API) calls are billed at
``BATCH_DISCOUNT`` of the online price by both OpenAI and Anthropic.

A model name matches its own entry, else the longest entry it starts with, so dated snapshots
(``gpt-4o-mini-2024-07-18``, ``claude-sonnet-4-5-20250929``) and ``-latest`` aliases find their
family's price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamill.errors import ConfigError

PRICES_AS_OF = "2025-11-01"
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class Price:
    """USD per 1M input (prompt) tokens and per 1M output (completion) tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int, *, offline: bool = False) -> float:
        usd = (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000
        return usd * BATCH_DISCOUNT if offline else usd


PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "o1": Price(15.00, 60.00),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    # Anthropic
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-haiku": Price(0.25, 1.25),
    "claude-3-opus": Price(15.00, 75.00),
}


def find_price(model: str) -> Price | None:
    """The listed price of ``model`` (exact name, else the longest listed prefix), or None."""
    price = PRICES.get(model)
    if price is not None:
        return price
    best = ""
    for name in PRICES:
        if model.startswith(name) and len(name) > len(best) and model[len(name) : len(name) + 1] in ("-", ""):
            best = name
    return PRICES[best] if best else None


def resolve_price(model: str, override: dict[str, Any] | Price | None = None) -> Price | None:
    """``override`` (``{"input": .., "output": ..}`` in USD per 1M tokens) or the listed price."""
    if override is None:
        return find_price(model)
    if isinstance(override, Price):
        return override
    try:
        return Price(float(override["input"]), float(override["output"]))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            'price_per_million must look like {"input": 2.5, "output": 10.0} (USD per 1M tokens), '
            f"got {override!r}"
        ) from None
