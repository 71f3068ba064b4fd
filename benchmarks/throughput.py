"""Throughput of one LLM step against the simulator at 50 ms latency, from one run.

Prints rows/s for batch_size 256 and 2, their ratio, the ratio to the latency-bound ideal
(max_workers / latency) and to a bare aiohttp loop sending the same requests at the same
concurrency (no cache, no checkpointing), and the client CPU per request of each.

    python benchmarks/throughput.py [--rows 20000] [--workers 256] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import OneStepPipeline, write_input  # noqa: E402

from datamill.simulator.server import run_simulator_process  # noqa: E402


async def bare_loop(url: str, rows: int, workers: int, tag: str) -> None:
    """The reference: one aiohttp session, ``workers`` coroutines pulling from a counter."""
    counter = iter(range(rows))
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for index in counter:
                body = {
                    "model": "bench-model",
                    "messages": [
                        {"role": "system", "content": "Translate into Chinese:"},
                        {"role": "user", "content": f"benchmark row {tag}{index}"},
                    ],
                }
                async with session.post(url, json=body) as reply:
                    data = await reply.json()
                    assert data["choices"][0]["message"]["content"]

        await asyncio.gather(*(worker() for _ in range(workers)))


def timed(label: str, fn) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu


class ThreadCount:
    """The most threads the process ran at once while in the ``with`` block (this sampler and
    the main thread left out): what a run adds beside its event loop."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, threading.active_count() - 2)

    def __enter__(self) -> ThreadCount:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ideal = args.workers / args.latency
    results: dict[str, dict[str, float]] = {}
    with run_simulator_process(latency_mean=args.latency) as sim, tempfile.TemporaryDirectory() as tmp:
        url = sim.openai_base + "/chat/completions"
        for batch_size in (256, 2):
            tag = f"b{batch_size}-"
            path = write_input(Path(tmp) / f"in_{batch_size}.jsonl", args.rows, tag)
            pipeline = OneStepPipeline(path, Path(tmp) / f"cache_{batch_size}", url, args.workers)
            pipeline.compile()
            with ThreadCount() as threads:
                wall, cpu = timed(
                    f"batch {batch_size}",
                    lambda p=pipeline, b=batch_size: p.forward(batch_size=b, progress=False),
                )
            assert sum(1 for _ in pipeline.rows()) == args.rows
            results[f"datamill batch_size={batch_size}"] = {
                "rows_per_s": args.rows / wall,
                "cpu_us": cpu / args.rows * 1e6,
                "threads": threads.peak,
            }
        wall, cpu = timed("bare", lambda: asyncio.run(bare_loop(url, args.rows, args.workers, "bare-")))
        results["bare aiohttp loop"] = {"rows_per_s": args.rows / wall, "cpu_us": cpu / args.rows * 1e6}
        stats = sim.stats()

    bare = results["bare aiohttp loop"]["rows_per_s"]
    big = results["datamill batch_size=256"]["rows_per_s"]
    small = results["datamill batch_size=2"]["rows_per_s"]
    print(
        f"rows={args.rows} max_workers={args.workers} latency={args.latency * 1000:.0f} ms  ideal={ideal:.0f} rows/s"
    )
    for name, figures in results.items():
        print(
            f"  {name:<26} {figures['rows_per_s']:8.0f} rows/s  {figures['rows_per_s'] / ideal:5.2f} of ideal  "
            f"{figures['rows_per_s'] / bare:5.2f} of bare loop  {figures['cpu_us']:6.0f} µs client CPU/row"
            + (f"  {figures['threads']:.0f} threads beside the loop" if "threads" in figures else "")
        )
    print(f"  batch_size 2 / batch_size 256 = {small / big:.2f}   (target ≥ 0.90)")
    print(f"  batch_size 256 / bare loop    = {big / bare:.2f}   (target ≥ 0.85)")
    print(f"  simulator: {stats.get('requests')} requests, {stats.get('duplicates')} duplicates")
    print(json.dumps({k: {kk: round(vv, 1) for kk, vv in v.items()} for k, v in results.items()}))


if __name__ == "__main__":
    main()
