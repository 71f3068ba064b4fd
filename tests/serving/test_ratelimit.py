"""The per-serving limiter: token buckets, adaptive concurrency, the serving-wide 429 pause."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from datamill import APILLMServing_request
from datamill.serving.limit_headers import parse_limit_headers
from datamill.serving.ratelimit import SLOW_START, ServingLimiter, TokenBucket
from tests.serving.serving_helpers import FAST_RETRY, OneStepPipeline, read_jsonl, write_rows


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
    limiter = ServingLimiter(32, slow_start=False)
    limiter.record_rate_limited(retry_after=0.3)
    limiter.record_rate_limited(retry_after=0.3)  # the same storm: one cut
    assert limiter.limit == 16
    started = time.monotonic()
    await limiter.acquire()
    limiter.release()
    assert time.monotonic() - started >= 0.28


async def test_concurrency_limit_grows_back_slowly_on_success() -> None:
    limiter = ServingLimiter(8, slow_start=False)
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
    limiter = ServingLimiter(16, slow_start=False)
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


def test_limit_headers_are_read_in_openai_and_anthropic_styles() -> None:
    openai = parse_limit_headers(
        {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": "598",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-reset-tokens": "20ms",
        }
    )
    assert openai is not None and openai.requests is not None and openai.tokens is not None
    assert (openai.requests.limit, openai.requests.remaining, openai.requests.reset_seconds) == (
        600,
        598,
        360,
    )
    assert openai.tokens.limit == 150000 and openai.tokens.reset_seconds == 0.02
    anthropic = parse_limit_headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2099-01-01T00:00:00Z",
        }
    )
    assert anthropic is not None and anthropic.requests is not None and anthropic.tokens is None
    assert anthropic.requests.limit == 50 and anthropic.requests.reset_seconds > 0
    assert parse_limit_headers({"content-type": "application/json"}) is None


async def test_an_unknown_limit_opens_with_slow_start_and_a_stated_one_ends_it() -> None:
    limiter = ServingLimiter(256)
    assert limiter.limit == SLOW_START
    for _ in range(4):
        limiter.record_success()
    assert limiter.limit == SLOW_START + 4  # one more slot per success: doubling every round
    limits = parse_limit_headers({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "3"})
    assert limits is not None
    limiter.observe(limits)
    assert limiter.limit == 256 and limiter.rpm == 600
    assert limiter.requests is not None and limiter.requests.level == 3
    assert ServingLimiter(256, rpm=600).limit == 256  # a known limit paces; no slow start


def test_an_unknown_limit_stated_in_headers_costs_few_429s_and_keeps_the_pace(sim, tmp_path: Path) -> None:
    rows = 150
    sim.configure(rpm_limit=600, rpm_burst=10, latency_mean=0.02)
    serving = APILLMServing_request(sim.openai_base, "gpt-4o-mini", max_workers=256, retry=FAST_RETRY)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", serving)
    started = time.monotonic()
    summary = pipeline.forward(batch_size=16)
    elapsed = time.monotonic() - started
    stats = sim.stats()
    assert summary.rows_failed == 0 and len(read_jsonl(pipeline.step_paths()[-1])) == rows
    assert stats["rate_limited"] <= 0.25 * rows, stats
    ideal = (rows - 10) / 10  # a burst of 10, then 10 per second
    assert elapsed <= ideal * 1.15, (elapsed, ideal)
