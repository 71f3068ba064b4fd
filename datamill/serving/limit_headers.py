"""The rate limits a provider states in its reply headers, read from every reply.

OpenAI (and most OpenAI-compatible servers) send ``x-ratelimit-{limit,remaining,reset}-
{requests,tokens}`` on every answer, the reset as a duration (``1s``, ``6m0s``, ``20ms``);
Anthropic sends ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, the reset as
an RFC 3339 time. Both state per-minute limits. The serving's ``ServingLimiter`` adopts them
(``ServingLimiter.observe``), so the limit is known after the first reply instead of being
learnt from a storm of 429s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

#: The headers that state a limit (the others say what is left of it): a reply whose values of
#: these equal the last reply's states nothing new.
LIMIT_HEADER_NAMES = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-tokens-limit",
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class LimitWindow:
    """One stated limit: per minute, what is left now, and seconds until it is full again."""

    limit: float
    remaining: float | None = None
    reset_seconds: float | None = None


@dataclass(frozen=True)
class ProviderLimits:
    requests: LimitWindow | None = None
    tokens: LimitWindow | None = None


def parse_limit_headers(headers: Mapping[str, str]) -> ProviderLimits | None:
    """The limits ``headers`` state (OpenAI or Anthropic style), or None when they state none."""
    requests = _window(headers, "requests")
    tokens = _window(headers, "tokens")
    if requests is None and tokens is None:
        return None
    return ProviderLimits(requests=requests, tokens=tokens)


def parse_reset(value: str) -> float | None:
    """Seconds from a reset header: a duration (``6m0s``, ``1.5s``, ``20ms``) or an RFC 3339 time."""
    value = value.strip()
    parts = _DURATION_PART.findall(value)
    if parts and "".join(number + unit for number, unit in parts) == value:
        return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - time.time())
    except ValueError:
        return None


def _window(headers: Mapping[str, str], kind: str) -> LimitWindow | None:
    for limit_name, remaining_name, reset_name in (
        (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}"),
        (
            f"anthropic-ratelimit-{kind}-limit",
            f"anthropic-ratelimit-{kind}-remaining",
            f"anthropic-ratelimit-{kind}-reset",
        ),
    ):
        limit = _number(headers.get(limit_name))
        if limit is None or limit <= 0:
            continue
        reset = headers.get(reset_name)
        return LimitWindow(
            limit=limit,
            remaining=_number(headers.get(remaining_name)),
            reset_seconds=parse_reset(reset) if reset else None,
        )
    return None


def _number(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None
