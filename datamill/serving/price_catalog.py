"""Prices from the ``genai-prices`` catalogue bundled in the installed package.

Only the bundled data is read: genai-prices' ``UpdatePrices`` (which fetches a newer catalogue
over HTTP) is never started, so pricing works the same without a network. The catalogue is
loaded on the first lookup and each answer is remembered for the process.

genai-prices matches model names loosely (Anthropic's entries match any name that *starts
with* the family, so ``claude-sonnet-4-5x`` would find ``claude-sonnet-4-5``). datamill takes
its answer only when the name is the entry's own, one of the names it lists, or the family a
dated snapshot or ``-latest`` alias belongs to: ``gpt-4o-mini-2024-07-18`` and
``claude-sonnet-4-5-20250929`` are priced, ``gpt-4o-minii`` is not.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from datamill.serving.pricing import BATCH_DISCOUNT, BATCH_DISCOUNTS, Price, Tier

#: A dated snapshot or alias suffix: ``-2024-07-18``, ``-20250929``, ``-latest``.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:20\d\d-\d\d-\d\d|20\d{6}|latest)$")
#: datamill provider names the catalogue knows (others have no catalogue price).
CATALOG_PROVIDERS = frozenset({"openai", "anthropic"})


def catalog_price(model: str, provider: str | None) -> Price | None:
    """The catalogue's price of ``model`` (exact name or a snapshot's family), or None."""
    if provider is not None and provider not in CATALOG_PROVIDERS:
        return None
    return _lookup(model, provider)


def catalog_version() -> str:
    """The installed genai-prices version, which dates its price data."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genai-prices")
    except PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=1024)
def _lookup(model: str, provider: str | None) -> Price | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # a broken install: prices are unknown, and the warning says how to give one
        return None
    family = _SNAPSHOT_SUFFIX.sub("", model)
    for name in dict.fromkeys((model, family)):
        usage = Usage(input_tokens=1, output_tokens=1)
        now = datetime.now(tz=UTC)
        try:
            online = calc_price(usage, name, provider_id=provider, genai_request_timestamp=now)
            batch = calc_price(
                usage,
                name,
                provider_id=provider,
                genai_request_timestamp=now,
                price_context={"processing": "batch"},
            )
        except LookupError:
            continue
        if not _names_match(online.model, (model, family)):
            continue
        return _to_price(online.model_price, batch.model_price, online.provider.id)
    return None


def _names_match(entry: Any, names: tuple[str, ...]) -> bool:
    """Whether one of ``names`` is the entry's id, a name it lists, or a family it starts with."""
    accepted = {entry.id} | set(_clause_names(entry.match))
    return any(name in accepted for name in names)


def _clause_names(clause: Any) -> list[str]:
    """The literal names of a genai-prices match clause (equals and starts-with values)."""
    names = [
        value for attr in ("equals", "starts_with") if isinstance(value := getattr(clause, attr, None), str)
    ]
    for attr in ("or_", "and_"):
        for sub in getattr(clause, attr, None) or ():
            names.extend(_clause_names(sub))
    return names


def _to_price(online: Any, batch: Any, provider: str) -> Price | None:
    source = f"genai-prices {catalog_version()}"
    base_in, tiers_in = _rates(getattr(online, "input_mtok", None))
    base_out, tiers_out = _rates(getattr(online, "output_mtok", None))
    if base_in is None or base_out is None:
        return None  # not priced per token (images, audio, requests): not ours to guess
    tiers = tuple(
        Tier(start, rate_in, tiers_out.get(start, base_out)) for start, rate_in in sorted(tiers_in.items())
    )
    batch_price = None
    if batch is not online and batch != online:
        batch_in, batch_tiers_in = _rates(getattr(batch, "input_mtok", None))
        batch_out, batch_tiers_out = _rates(getattr(batch, "output_mtok", None))
        if batch_in is not None and batch_out is not None:
            batch_tiers = tuple(
                Tier(start, rate, batch_tiers_out.get(start, batch_out))
                for start, rate in sorted(batch_tiers_in.items())
            )
            batch_price = Price(batch_in, batch_out, tiers=batch_tiers, source=source)
    return Price(
        base_in,
        base_out,
        tiers=tiers,
        batch=batch_price,
        batch_discount=BATCH_DISCOUNTS.get(provider, BATCH_DISCOUNT),
        source=source,
    )


def _rates(value: Any) -> tuple[float | None, dict[int, float]]:
    """A catalogue price (a Decimal, or tiered prices) as a base rate and ``{threshold: rate}``."""
    if value is None:
        return None, {}
    if isinstance(value, Decimal | int | float):
        return float(value), {}
    return float(value.base), {int(tier.start): float(tier.price) for tier in value.tiers}
