"""Per-serving rate limits: concurrency, requests per minute, tokens per minute, and 429 back-off.

One ``ServingLimiter`` belongs to one serving, so every operator that uses the serving shares
its limits. A request passes two gates before it is sent:

1. **Concurrency** — an adaptive limit between 1 and ``max_workers``. While the serving's rate
   limit is unknown (no ``rpm``/``tpm`` given, no limit stated by the provider yet) it opens at
   ``SLOW_START`` and grows by one per success (doubling every round, as TCP's slow start),
   so a first burst never exceeds a few requests. It is halved on a 429 (at most once per
   ``cut_interval`` seconds, so one storm is one cut) and grown back slowly, by ``1 / limit``
   per success (about one slot per round of successful requests).
2. **Pacing** — token buckets for RPM and TPM, refilled continuously with a burst of one
   second's worth. Requests go through the pacing gate one at a time, in arrival order, so a
   serving emits requests evenly instead of in bursts. A 429 pauses the whole gate until its
   ``Retry-After`` has passed: every request of the serving waits, not only the refused one.

The limits a provider states in the headers of every reply (``x-ratelimit-*``,
``anthropic-ratelimit-*``: ``datamill.serving.limit_headers``) are adopted by ``observe``: the
pacing follows the stated RPM/TPM (a lower stated limit wins over ``rpm``/``tpm``), starting
from what the reply says remains, and slow start ends. TPM is charged with an
estimate before the call and corrected with the reply's ``usage`` after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from datamill.serving.limit_headers import ProviderLimits

log = logging.getLogger(__name__)


class TokenBucket:
    """A bucket of ``capacity`` refilled at ``rate`` per second; its level may go negative (debt).

    A cost larger than the capacity passes once the bucket is full and leaves the bucket in
    debt, so a large request is delayed, never refused forever.
    """

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.level = self.capacity
        self.updated = now

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` can be taken (0.0 when it can be taken now)."""
        self._refill(now)
        needed = min(cost, self.capacity)
        if self.level >= needed:
            return 0.0
        return (needed - self.level) / self.rate

    def take(self, cost: float, now: float) -> None:
        self._refill(now)
        self.level -= cost

    def adjust(self, delta: float) -> None:
        """Charge ``delta`` more (or refund it when negative), e.g. actual minus estimated tokens."""
        self.level = min(self.capacity, self.level - delta)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now


#: Concurrency a serving opens with while its rate limit is unknown.
SLOW_START = 4


def per_second_bucket(per_minute: float, now: float) -> TokenBucket:
    """A bucket for a per-minute limit, with a burst of one second's worth."""
    rate = per_minute / 60.0
    return TokenBucket(rate, rate, now)


class ServingLimiter:
    """Concurrency, RPM and TPM limits of one serving, plus its reaction to 429s.

    Created per run inside the run's event loop (asyncio primitives belong to one loop);
    ``acquire`` before each attempt, ``release`` after it. ``slow_start=False`` opens at
    ``max_workers`` even while the limit is unknown.
    """

    def __init__(
        self,
        max_workers: int,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        cut_interval: float = 1.0,
        slow_start: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_workers = max(1, int(max_workers))
        self.clock = clock
        now = clock()
        self.rpm = rpm
        self.tpm = tpm
        self.requests = per_second_bucket(rpm, now) if rpm else None
        self.tokens = per_second_bucket(tpm, now) if tpm else None
        self.slow_start = slow_start and rpm is None and tpm is None and self.max_workers > SLOW_START
        self.limit = float(SLOW_START if self.slow_start else self.max_workers)
        self.in_use = 0
        self.paused_until = 0.0
        self.cut_interval = cut_interval
        self.rate_limited = 0
        #: The limit headers of the last reply looked at (``HTTPServing._observe_limits``).
        self.stated_headers: tuple[str | None, ...] = ()
        self._last_cut = -1e18
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._gate = asyncio.Lock()

    @property
    def paces(self) -> bool:
        """Whether requests go through the pacing gate (any RPM/TPM limit, or a 429 seen)."""
        return self.requests is not None or self.tokens is not None or self.paused_until > 0.0

    async def acquire(self, estimated_tokens: int = 0) -> None:
        """Wait for a concurrency slot, then for the pacing gate; charge the buckets."""
        if self.in_use < int(self.limit) and not self._waiters:
            self.in_use += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.release()
                else:
                    self._waiters.remove(waiter)
                raise
        if not self.paces:
            return
        try:
            await self._pass_gate(estimated_tokens)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def record_success(self, estimated_tokens: int = 0, actual_tokens: int = 0) -> None:
        """Grow the concurrency limit (by one in slow start, else a little) and correct the TPM
        charge from ``usage``."""
        if self.limit < self.max_workers:
            step = 1.0 if self.slow_start else 1.0 / self.limit
            self.limit = min(float(self.max_workers), self.limit + step)
            self._wake()
        if self.tokens is not None and actual_tokens:
            self.tokens.adjust(actual_tokens - estimated_tokens)

    def record_rate_limited(self, retry_after: float | None, provider_rpm: float | None = None) -> None:
        """A 429: pause the whole serving for ``retry_after`` and cut the concurrency limit."""
        self.rate_limited += 1
        self.slow_start = False
        now = self.clock()
        pause = retry_after if retry_after is not None and retry_after > 0 else 1.0
        self.paused_until = max(self.paused_until, now + pause)
        if self.requests is None and provider_rpm:
            log.info("provider reports a limit of %d requests per minute; pacing to it", provider_rpm)
            self.rpm = provider_rpm
            self.requests = per_second_bucket(provider_rpm, now)
            self.requests.level = 0.0
        if now - self._last_cut >= self.cut_interval:
            self._last_cut = now
            self.limit = max(1.0, self.limit / 2.0)

    def observe(self, limits: ProviderLimits) -> None:
        """Adopt the limits a reply's headers state (see the module docstring)."""
        now = self.clock()
        requests, tokens = limits.requests, limits.tokens
        if requests is not None and (self.rpm is None or requests.limit < self.rpm):
            log.info("provider states a limit of %d requests per minute; pacing to it", requests.limit)
            self.rpm = requests.limit
            self.requests = per_second_bucket(requests.limit, now)
            if requests.remaining is not None:
                self.requests.level = min(self.requests.capacity, requests.remaining)
        if tokens is not None and (self.tpm is None or tokens.limit < self.tpm):
            log.info("provider states a limit of %d tokens per minute; pacing to it", tokens.limit)
            self.tpm = tokens.limit
            self.tokens = per_second_bucket(tokens.limit, now)
        if self.slow_start and (self.requests is not None or self.tokens is not None):
            self.slow_start = False
            self.limit = float(self.max_workers)
            self._wake()

    async def _pass_gate(self, estimated_tokens: int) -> None:
        async with self._gate:
            while True:
                now = self.clock()
                wait = self.paused_until - now
                if self.requests is not None:
                    wait = max(wait, self.requests.wait_time(1, now))
                if self.tokens is not None and estimated_tokens:
                    wait = max(wait, self.tokens.wait_time(estimated_tokens, now))
                if wait <= 0.0:
                    break
                await asyncio.sleep(wait)
            if self.requests is not None:
                self.requests.take(1, now)
            if self.tokens is not None and estimated_tokens:
                self.tokens.take(estimated_tokens, now)

    def _wake(self) -> None:
        while self._waiters and self.in_use < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)
