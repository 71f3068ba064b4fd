"""How many chat completions per second the provider simulator serves.

The simulator must never be the bottleneck of a benchmark, so this measures it alone: the
simulator runs as a subprocess (its own interpreter and CPU), and one raw aiohttp client session
sends distinct chat-completion requests at a fixed concurrency. It prints requests/s and the
simulator's own counters, and exits non-zero if any request failed or was counted wrongly.

    python benchmarks/simulator_capacity.py --requests 20000 --concurrency 256 --latency 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

from datamill.simulator import SimulatorHandle, run_simulator_process

WARMUP_REQUESTS = 1000


def build_bodies(count: int, offset: int) -> list[bytes]:
    """Distinct request bodies, encoded before the clock starts."""
    return [
        json.dumps(
            {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You write one short sentence."},
                    {"role": "user", "content": f"Describe item number {offset + i}."},
                ],
                "temperature": 0.7,
            }
        ).encode()
        for i in range(count)
    ]


async def send_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, dict[int, int]]:
    """Send every body with ``concurrency`` workers on one session; return (seconds, status counts)."""
    statuses: dict[int, int] = {}
    pending = iter(bodies)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer benchmark"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body in pending:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, statuses


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``), robust to other load on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(handle: SimulatorHandle, requests: int, concurrency: int) -> int:
    url = handle.openai_base + "/chat/completions"
    warmup = build_bodies(WARMUP_REQUESTS, offset=requests)
    bodies = build_bodies(requests, offset=0)
    asyncio.run(send_all(url, warmup, concurrency))
    handle.reset()
    assert handle.process is not None
    server_cpu = process_cpu_seconds(handle.process.pid)
    client_cpu = time.process_time()
    seconds, statuses = asyncio.run(send_all(url, bodies, concurrency))
    client_cpu = time.process_time() - client_cpu
    server_cpu = process_cpu_seconds(handle.process.pid) - server_cpu
    stats = handle.stats()
    print(f"requests:     {requests}")
    print(f"concurrency:  {concurrency}")
    print(f"seconds:      {seconds:.2f}")
    print(f"requests/s:   {requests / seconds:,.0f}")
    print(
        f"server CPU:   {server_cpu * 1e6 / requests:.0f} us/request (one core: {requests / server_cpu:,.0f} req/s)"
    )
    print(f"client CPU:   {client_cpu * 1e6 / requests:.0f} us/request")
    print(f"statuses:     {statuses}")
    print(f"simulator:    {json.dumps(stats)}")
    ok = statuses == {200: requests} and stats["answered"] == requests and stats["duplicates"] == 0
    if not ok:
        print("FAILED: every request should be answered 200 exactly once", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.01, help="simulated latency in seconds")
    args = parser.parse_args()
    with run_simulator_process(latency_mean=args.latency) as handle:
        return run(handle, args.requests, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
