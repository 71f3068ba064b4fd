"""The misbehaviour a real provider shows: latency, rate limits, errors, junk, dropped connections.

Kept apart from the endpoints so every online model call (OpenAI chat and embeddings,
Anthropic messages) misbehaves by the same rules and the same seeded random stream.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from datamill.simulator.config import SimulatorConfig

OK = 0
DROP = 1
FAIL = 2
MALFORMED = 3


class RateLimiter:
    """A token bucket of ``burst`` requests refilled at ``rpm / 60`` per second.

    With the default burst of a full minute, the first ``rpm`` requests pass at once and the
    next waits for a token; ``try_acquire`` returns how long, which becomes ``Retry-After``.
    """

    def __init__(
        self, rpm: int, burst: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rpm / 60.0
        self.capacity = float(burst if burst is not None else rpm)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def remaining(self) -> tuple[int, float]:
        """Whole requests left now, and seconds until the bucket is full again."""
        now = self.clock()
        tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        return int(tokens), (self.capacity - tokens) / self.rate


def make_rate_limiter(config: SimulatorConfig) -> RateLimiter | None:
    """The limiter ``config`` asks for, or None when ``rpm_limit`` is unset."""
    if config.rpm_limit is None:
        return None
    return RateLimiter(config.rpm_limit, config.rpm_burst)


def draw_latency(rng: random.Random, config: SimulatorConfig) -> float:
    """Seconds to sleep: uniform in mean +/- jitter, never negative; 0.0 means do not sleep."""
    mean = config.latency_mean
    jitter = config.latency_jitter
    if jitter <= 0.0:
        return mean
    return max(0.0, mean + jitter * (2.0 * rng.random() - 1.0))


def draw_outcome(rng: random.Random, config: SimulatorConfig) -> int:
    """One of ``OK``, ``DROP``, ``FAIL``, ``MALFORMED`` with the configured probabilities."""
    drop = config.drop_rate
    fail = config.failure_rate
    malformed = config.malformed_rate
    if drop == 0.0 and fail == 0.0 and malformed == 0.0:
        return OK
    u = rng.random()
    if u < drop:
        return DROP
    if u < drop + fail:
        return FAIL
    if u < drop + fail + malformed:
        return MALFORMED
    return OK
