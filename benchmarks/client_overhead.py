"""Client CPU per request of each backend, against a simulator in a subprocess.

This process runs only the client; the simulator runs in its own process, so
``time.process_time()`` here counts the client's CPU alone. Each variant sends the same number
of distinct chat requests at the same concurrency:

* ``aiohttp bare``       a bare aiohttp loop (the floor any client is compared with);
* ``datamill openai``    ``APILLMServing_request.send_once`` under its limiter;
* ``datamill anthropic`` ``AnthropicLLMServing.send_once`` under its limiter;
* ``openai sdk``         ``AsyncOpenAI().chat.completions.create`` (default httpx client);
* ``anthropic sdk``      ``AsyncAnthropic().messages.create`` (default httpx client).

    python benchmarks/client_overhead.py [--requests 3000] [--concurrency 64] [--latency 0.02]

SDK variants are skipped when the SDK is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent.parent))
from datamill.serving.anthropic import AnthropicLLMServing  # noqa: E402
from datamill.serving.base import LLMServingABC  # noqa: E402
from datamill.serving.openai_compat import APILLMServing_request  # noqa: E402
from datamill.simulator.server import run_simulator_process  # noqa: E402

KEY = "sk-benchmark-key-0000000000"
Send = Callable[[int], Awaitable[None]]


async def drive(send: Send, requests: int, concurrency: int) -> tuple[float, float]:
    """Send ``requests`` calls with ``concurrency`` workers; return (CPU µs per request, req/s)."""
    counter = iter(range(requests))

    async def worker() -> None:
        for index in counter:
            await send(index)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / requests * 1e6, requests / wall


def messages(index: int, tag: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"client overhead {tag} request {index}"}]


async def bench_bare(base: str, requests: int, concurrency: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, headers={"Authorization": f"Bearer {KEY}"}
    ) as session:
        url = base + "/v1/chat/completions"

        async def send(index: int) -> None:
            body = {"model": "gpt-4o-mini", "messages": messages(index, "bare")}
            async with session.post(url, json=body) as reply:
                json.loads(await reply.read())

        return await drive(send, requests, concurrency)


async def bench_serving(
    serving: LLMServingABC, tag: str, requests: int, concurrency: int
) -> tuple[float, float]:
    await serving.start()
    limiter = serving.limiter
    try:

        async def send(index: int) -> None:
            await limiter.acquire()
            try:
                await serving.send_once(serving.build_request(messages(index, tag)))
            finally:
                limiter.release()

        return await drive(send, requests, concurrency)
    finally:
        await serving.close()


async def bench_openai_sdk(base: str, requests: int, concurrency: int) -> tuple[float, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
    try:

        async def send(index: int) -> None:
            await client.chat.completions.create(model="gpt-4o-mini", messages=messages(index, "oai-sdk"))

        return await drive(send, requests, concurrency)
    finally:
        await client.close()


async def bench_anthropic_sdk(base: str, requests: int, concurrency: int) -> tuple[float, float]:
    from anthropic import AsyncAnthropic

    client = AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0)
    try:

        async def send(index: int) -> None:
            await client.messages.create(
                model="claude-haiku-4-5", max_tokens=64, messages=messages(index, "ant-sdk")
            )

        return await drive(send, requests, concurrency)
    finally:
        await client.close()


async def run_all(base: str, requests: int, concurrency: int) -> list[tuple[str, float, float]]:
    variants: list[tuple[str, Callable[[], Awaitable[tuple[float, float]]]]] = [
        ("aiohttp bare", lambda: bench_bare(base, requests, concurrency)),
        (
            "datamill openai",
            lambda: bench_serving(
                APILLMServing_request(base + "/v1", "gpt-4o-mini", concurrency, api_key=KEY),
                "dm-oai",
                requests,
                concurrency,
            ),
        ),
        (
            "datamill anthropic",
            lambda: bench_serving(
                AnthropicLLMServing(base, "claude-haiku-4-5", concurrency, api_key=KEY, max_tokens=64),
                "dm-ant",
                requests,
                concurrency,
            ),
        ),
        ("openai sdk (httpx)", lambda: bench_openai_sdk(base, requests, concurrency)),
        ("anthropic sdk (httpx)", lambda: bench_anthropic_sdk(base, requests, concurrency)),
    ]
    results = []
    for name, bench in variants:
        try:
            cpu_us, rate = await bench()
        except ImportError as exc:
            print(f"{name:<24} skipped: {exc}")
            continue
        results.append((name, cpu_us, rate))
        print(f"{name:<24} {cpu_us:>10.0f} µs CPU/request {rate:>10.0f} req/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with run_simulator_process(latency_mean=args.latency, require_api_key=KEY) as sim:
        print(
            f"{args.requests} requests, {args.concurrency} concurrent, {args.latency * 1000:.0f} ms latency"
        )
        asyncio.run(run_all(sim.base_url, args.requests, args.concurrency))


if __name__ == "__main__":
    main()
