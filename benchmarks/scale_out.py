"""Ray executor speed-up for a CPU-heavy step, and its per-row overhead for a trivial one.

A ``MapOperator`` that burns about ``--ms`` of CPU per row (SHA-256 rounds, calibrated here)
runs over ``--rows`` rows in-process, then on a local Ray with ``--workers`` CPUs; the ratio
of the two wall times is the speed-up (target: >= 1.6x with 2 workers on 2 cores). Ray's
start-up is excluded (a warm-up run starts it and its workers) and printed apart. Then an
identity ``MapOperator`` over ``--trivial-rows`` rows measures what the executor itself costs
per row: reading, shipping rows to a task and back, committing.

    python benchmarks/scale_out.py [--rows 2000] [--ms 5] [--workers 2] [--batch 25]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datamill import BatchedFileStorage, BatchedPipelineABC, MapOperator
from datamill.pipeline.executors import Executor
from datamill.pipeline.ray_executor import RayExecutor


def calibrate(ms_per_row: float) -> int:
    """SHA-256 rounds that take about ``ms_per_row`` milliseconds of CPU here."""
    rounds, value = 20_000, b"calibrate"
    started = time.process_time()
    for _ in range(rounds):
        value = hashlib.sha256(value).digest()
    per_round = (time.process_time() - started) / rounds
    return max(1, int(ms_per_row / 1000 / per_round))


def make_burner(rounds: int) -> Callable[[str], str]:
    def burn(text: str) -> str:
        value = text.encode()
        for _ in range(rounds):
            value = hashlib.sha256(value).digest()
        return value.hex()[:16]

    return burn


def identity(text: str) -> str:
    return text


class MapPipeline(BatchedPipelineABC):
    def __init__(self, source: Path, cache: Path, fn: Callable[[str], Any], config: Any) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(source), cache_path=str(cache), file_name_prefix="scale")
        self.map = MapOperator(fn, config=config)

    def forward(self) -> None:
        self.map.run(self.storage.step(), input_key="text", output_key="out")


def write_input(path: Path, rows: int) -> Path:
    with path.open("w") as handle:
        for index in range(rows):
            handle.write(json.dumps({"id": index, "text": f"scale-out row {index}"}) + "\n")
    return path


def timed_run(
    source: Path, cache: Path, fn: Callable[[str], Any], config: Any, batch: int, executor: Executor | None
) -> float:
    pipeline = MapPipeline(source, cache, fn, config)
    started = time.perf_counter()
    summary = pipeline.forward(batch_size=batch, executor=executor, progress=False)
    elapsed = time.perf_counter() - started
    assert summary.rows_failed == 0 and summary.steps[0].rows_out == summary.steps[0].rows_in
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--ms", type=float, default=5.0, help="CPU milliseconds per row of the heavy map")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--trivial-rows", type=int, default=20_000)
    args = parser.parse_args()

    rounds = calibrate(args.ms)
    burn = make_burner(rounds)
    ray_executor = RayExecutor(num_cpus=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        heavy = write_input(root / "heavy.jsonl", args.rows)
        trivial = write_input(root / "trivial.jsonl", args.trivial_rows)
        warm = write_input(root / "warm.jsonl", 4 * args.workers)

        started = time.perf_counter()
        timed_run(warm, root / "warm", burn, {"rounds": rounds}, 1, ray_executor)
        ray_start = time.perf_counter() - started

        local_s = timed_run(heavy, root / "heavy-local", burn, {"rounds": rounds}, args.batch, None)
        ray_s = timed_run(heavy, root / "heavy-ray", burn, {"rounds": rounds}, args.batch, ray_executor)
        outputs = [(root / name / "scale_step1.jsonl").read_bytes() for name in ("heavy-local", "heavy-ray")]
        assert outputs[0] == outputs[1], "Ray and in-process outputs differ"

        trivial_local = timed_run(trivial, root / "trivial-local", identity, None, args.batch, None)
        trivial_ray = timed_run(trivial, root / "trivial-ray", identity, None, args.batch, ray_executor)
    ray_executor.shutdown()

    ratio = local_s / ray_s
    per_row = 1e6 / args.trivial_rows
    print(f"heavy map: {args.rows} rows x {args.ms:g} ms CPU ({rounds} SHA-256 rounds), batch {args.batch}")
    print(f"  in-process        {local_s:8.2f} s   {args.rows / local_s:8.1f} rows/s")
    print(f"  Ray, {args.workers} workers    {ray_s:8.2f} s   {args.rows / ray_s:8.1f} rows/s")
    print(f"  speed-up          {ratio:8.2f}x  (target >= 1.6x with 2 workers on 2 cores)")
    print(f"  Ray start-up      {ray_start:8.2f} s   (excluded above)")
    print(f"trivial map: {args.trivial_rows} rows, batch {args.batch}")
    print(f"  in-process        {trivial_local * per_row:8.1f} us/row")
    print(f"  Ray               {trivial_ray * per_row:8.1f} us/row")
    print(f"  executor overhead {(trivial_ray - trivial_local) * per_row:8.1f} us/row")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
