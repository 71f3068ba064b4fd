"""Model prices in USD per 1M tokens, for cost accounting, estimates and ``max_cost_usd``.

Where prices come from, in order:

1. an explicit price on the serving: ``price_per_million={"input": 2.5, "output": 10.0}`` (USD
   per 1M tokens; ``"batch_input"`` / ``"batch_output"`` may be given too), or a ``Price``
   assigned to ``serving.price`` (``price_per_million`` accepts a ``Price`` as well);
2. the maintained price catalogue of ``genai-prices`` (``datamill.serving.price_catalog``),
   read from the data bundled in the installed package — never fetched at run time;
3. otherwise the price is **unknown**: ``LLMServingABC.cost_usd`` returns ``None``, every
   display shows ``—`` (never ``$0`` and never another model's price), one warning per model
   per run names the model and how to give a price, and ``max_cost_usd`` refuses to start.

Why genai-prices rather than a hand-kept table, litellm's price map or tokencost: it is
maintained (prices are checked against the providers' pages and dated, with price history),
it works fully offline from the data bundled in its wheel (auto-update is a separate, opt-in
``UpdatePrices`` that datamill never starts), it knows the Batch API prices of the current
OpenAI and Anthropic models, and it is light (pure Python, ~3 MB, depends on pydantic, which
datamill needs anyway, and httpx2; loaded only when a price is first looked up, ~0.8 s).
litellm's ``model_prices_and_context_window.json`` is as broad but litellm is heavy (dozens
of dependencies) and fetches the map from GitHub by default; tokencost ships a copy of that
map, without batch prices. Refresh prices with ``pip install -U genai-prices``.

Batch API (offline) responses are billed at the catalogue's batch price where it has one,
else at the provider's documented batch discount (``BATCH_DISCOUNTS``: 50% for OpenAI and
Anthropic).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from datamill.errors import ConfigError

log = logging.getLogger(__name__)

#: The documented Batch API price as a fraction of the online price, by provider (OpenAI:
#: platform.openai.com/docs/guides/batch; Anthropic: docs.anthropic.com, "Batch processing").
BATCH_DISCOUNTS: dict[str, float] = {"openai": 0.5, "anthropic": 0.5}
#: The batch discount of a provider not in ``BATCH_DISCOUNTS`` (both known providers use it).
BATCH_DISCOUNT = 0.5

HOW_TO_PRICE = (
    'pass price_per_million={"input": ..., "output": ...} (USD per 1M tokens) to the serving, '
    "or update the catalogue with: pip install -U genai-prices"
)


@dataclass(frozen=True)
class Tier:
    """Above ``prompt_tokens`` prompt tokens in one request, all of its tokens cost these rates."""

    prompt_tokens: int
    input: float
    output: float


@dataclass(frozen=True)
class Price:
    """USD per 1M input (prompt) tokens and per 1M output (completion) tokens.

    ``tiers`` are long-context rates (a request whose prompt passes a tier's threshold pays
    that tier's rates for all its tokens). ``batch`` is the Batch API price where the source
    knows it; otherwise offline responses cost ``batch_discount`` of the online price.
    ``source`` says where the price came from (shown in warnings and ``datamill estimate``).
    """

    input: float
    output: float
    tiers: tuple[Tier, ...] = ()
    batch: Price | None = None
    batch_discount: float = BATCH_DISCOUNT
    source: str = "given"

    def cost(self, prompt_tokens: int, completion_tokens: int, *, offline: bool = False) -> float:
        """USD for one request's usage; ``offline`` for a Batch API response."""
        if offline and self.batch is not None:
            return self.batch.cost(prompt_tokens, completion_tokens)
        rate_in, rate_out = self.input, self.output
        for tier in reversed(self.tiers):
            if prompt_tokens > tier.prompt_tokens:
                rate_in, rate_out = tier.input, tier.output
                break
        usd = (prompt_tokens * rate_in + completion_tokens * rate_out) / 1_000_000
        return usd * self.batch_discount if offline else usd


def find_price(model: str, provider: str | None = None) -> Price | None:
    """The catalogue price of ``model`` at ``provider`` (None: found by the model's name).

    The name must be the catalogue's own, or a dated snapshot (``-2024-07-18``, ``-20250929``)
    or ``-latest`` alias of one; nothing fuzzier, so ``gpt-4o-minii`` has no price.
    """
    from datamill.serving.price_catalog import catalog_price

    return catalog_price(model, provider)


def resolve_price(
    model: str, override: dict[str, Any] | Price | None = None, provider: str | None = None
) -> Price | None:
    """``override`` (``{"input": .., "output": ..}`` in USD per 1M tokens) or the catalogue price."""
    if override is None:
        return find_price(model, provider)
    if isinstance(override, Price):
        return override
    discount = BATCH_DISCOUNTS.get(provider or "", BATCH_DISCOUNT)
    try:
        unknown = set(override) - {"input", "output", "batch_input", "batch_output"}
        if unknown:
            raise KeyError(sorted(unknown))
        batch = None
        if "batch_input" in override or "batch_output" in override:
            batch = Price(float(override["batch_input"]), float(override["batch_output"]), source="given")
        price = Price(
            float(override["input"]),
            float(override["output"]),
            batch=batch,
            batch_discount=discount,
            source="price_per_million",
        )
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            'price_per_million must look like {"input": 2.5, "output": 10.0} (USD per 1M tokens; '
            f'"batch_input" and "batch_output" may be added), got {override!r}'
        ) from None
    if min(price.input, price.output) < 0:
        raise ConfigError(f"price_per_million must not be negative, got {override!r}")
    return price


def add_cost(total: float | None, cost: float | None) -> float | None:
    """``total + cost`` where ``None`` (an unknown price) makes the sum unknown."""
    if total is None or cost is None:
        return None
    return total + cost


def sum_costs(costs: Iterable[float | None]) -> float | None:
    """The sum of ``costs``, or None when any of them is unknown (0.0 for none at all)."""
    total: float | None = 0.0
    for cost in costs:
        total = add_cost(total, cost)
    return total


def warn_unknown_price(model: str, provider: str) -> None:
    """The one warning of a run about a model without a price."""
    log.warning("no price is known for model %r (%s): its cost shows as —; %s", model, provider, HOW_TO_PRICE)


def unknown_price_error(model: str) -> ConfigError:
    """What ``max_cost_usd`` raises over a model without a price."""
    return ConfigError(f"max_cost_usd needs a price, and none is known for model {model!r}; {HOW_TO_PRICE}")
