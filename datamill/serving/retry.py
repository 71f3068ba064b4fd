"""Retry policy: which failures are retried, and how long to wait between attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    Retried: 429, 5xx, timeouts, connection errors and malformed replies. Not retried: other
    4xx (bad request, auth), which fail fast with the provider's message. A ``Retry-After``
    from the provider overrides the computed delay when it is longer.

    A 429 is not charged to ``max_attempts``: the serving's limiter pauses every request of the
    serving for the ``Retry-After`` and slows down, so a request refused under a storm is
    simply queued again, up to ``max_rate_limited`` times (and within ``max_total_seconds``).
    """

    max_attempts: int = 6
    max_rate_limited: int = 30
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total_seconds: float = 600.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        computed = random.uniform(0, min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))
        if retry_after is not None:
            return max(retry_after, computed * 0.1)
        return computed
