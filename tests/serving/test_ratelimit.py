"""The per-serving limiter: token buckets, adaptive concurrency, the serving-wide 429 pause."""

from __future__ import annotations

import asyncio
import time

from datamill.serving.ratelimit import ServingLimiter, TokenBucket


def test_token_bucket_waits_for_refill_and_lets_a_large_cost_through_in_debt() -> None:
    bucket = TokenBucket(rate=10.0, capacity=10.0, now=0.0)
    assert bucket.wait_time(10, 0.0) == 0.0
    bucket.take(10, 0.0)
    assert abs(bucket.wait_time(1, 0.0) - 0.1) < 1e-9
    assert bucket.wait_time(1, 0.1) == 0.0
    bucket.take(50, 1.0)  # more than the capacity: passes when full, leaves a debt
    assert bucket.level == -40.0
    assert abs(bucket.wait_time(1, 1.0) - 4.1) < 1e-9


def test_token_bucket_adjust_charges_the_difference_between_actual_and_estimate() -> None:
    bucket = TokenBucket(rate=100.0, capacity=100.0, now=0.0)
    bucket.take(40, 0.0)
    bucket.adjust(25)  # the reply used 25 tokens more than estimated
    assert bucket.level == 35.0
    bucket.adjust(-500)  # a refund never overfills the bucket
    assert bucket.level == 100.0


async def test_rpm_limit_paces_requests_evenly() -> None:
    limiter = ServingLimiter(64, rpm=1200)  # 20 per second, burst of 20
    started = time.monotonic()

    async def one() -> None:
        await limiter.acquire()
        limiter.release()

    await asyncio.gather(*(one() for _ in range(40)))
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed <= 1.5  # 20 at once, then 20 more at 20/s


async def test_tpm_limit_paces_by_estimated_tokens() -> None:
    limiter = ServingLimiter(64, tpm=6000)  # 100 tokens per second, burst of 100
    started = time.monotonic()
    for _ in range(4):
        await limiter.acquire(estimated_tokens=50)
        limiter.release()
    assert 0.9 <= time.monotonic() - started <= 1.4


async def test_rate_limited_pauses_the_whole_serving_and_halves_concurrency_once_per_interval() -> None:
    limiter = ServingLimiter(32)
    limiter.record_rate_limited(retry_after=0.3)
    limiter.record_rate_limited(retry_after=0.3)  # the same storm: one cut
    assert limiter.limit == 16
    started = time.monotonic()
    await limiter.acquire()
    limiter.release()
    assert time.monotonic() - started >= 0.28


async def test_concurrency_limit_grows_back_slowly_on_success() -> None:
    limiter = ServingLimiter(8)
    limiter.record_rate_limited(retry_after=0.0)
    assert limiter.limit == 4
    for _ in range(4):
        limiter.record_success()
    assert 4.5 < limiter.limit < 6
    for _ in range(100):
        limiter.record_success()
    assert limiter.limit == 8


async def test_concurrency_never_exceeds_the_current_limit() -> None:
    limiter = ServingLimiter(4)
    peak = 0

    async def one() -> None:
        nonlocal peak
        await limiter.acquire()
        peak = max(peak, limiter.in_use)
        await asyncio.sleep(0.01)
        limiter.release()

    await asyncio.gather(*(one() for _ in range(30)))
    assert peak == 4
    assert limiter.in_use == 0


async def test_a_429_that_states_the_providers_limit_makes_an_unpaced_serving_pace_to_it() -> None:
    limiter = ServingLimiter(16)
    assert not limiter.paces
    limiter.record_rate_limited(retry_after=0.0, provider_rpm=600)
    assert limiter.rpm == 600 and limiter.requests is not None


async def test_cancelled_waiter_gives_its_slot_back() -> None:
    limiter = ServingLimiter(1)
    await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter.release()
    assert limiter.in_use == 0
    await asyncio.wait_for(limiter.acquire(), 1.0)
