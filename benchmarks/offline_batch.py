"""Offline batch generation at scale: 1,000,000 requests through the simulator's OpenAI Batch API.

Measures, for one offline step (``PromptedGenerator``, one request per row):

* submission: the first run, from reading the input to raising ``OfflineBatchGenerationNotFinished``
  — building the requests and their keys, encoding the JSONL lines, recording every chunk's
  intent, uploading the files (50,000 lines each) and creating the jobs; target <= 60 s;
* ingestion: in the rerun, downloading each job's output file, joining every line to its
  request by ``custom_id`` into the request cache and recording it; target >= 50,000 rows/s.
  The rest of the rerun (committing the step from the cache) is reported beside it.

The simulator runs in its own process; it holds the jobs during the timed submission and
answers them in between (not timed).

    python benchmarks/offline_batch.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_input  # noqa: E402

from datamill import OfflineBatchGenerationNotFinished  # noqa: E402
from datamill.operators.generate import PromptedGenerator  # noqa: E402
from datamill.pipeline.base import BatchedPipelineABC  # noqa: E402
from datamill.pipeline.storage import BatchedFileStorage  # noqa: E402
from datamill.serving.offline import engine  # noqa: E402
from datamill.serving.openai_compat import APILLMServing_request  # noqa: E402
from datamill.serving.registry import batch_provider_for_record  # noqa: E402
from datamill.simulator.server import run_simulator_process  # noqa: E402


class OfflineStep(BatchedPipelineABC):
    def __init__(self, input_path: Path, cache: Path, api_url: str) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(input_path), cache_path=str(cache), file_name_prefix="bench")
        self.llm = APILLMServing_request(
            api_url=api_url, model_name="gpt-4o-mini", use_offline_batch_generation=True
        )
        self.generate = PromptedGenerator(llm_serving=self.llm, system_prompt="Translate into Chinese:")

    def forward(self) -> None:
        self.generate.run(self.storage.step(), input_key="raw_content", output_key="out")


class Timer:
    """Accumulates the time spent inside one async method (patched on the class)."""

    def __init__(self, owner: type, name: str) -> None:
        self.seconds = 0.0
        self.cpu = 0.0
        self.calls = 0
        original = getattr(owner, name)

        async def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.cpu += time.process_time() - cpu
                self.calls += 1

        setattr(owner, name, timed)


async def wait_for_jobs(jobs: list[dict]) -> float:
    started = time.monotonic()
    provider = batch_provider_for_record("openai", jobs[0]["base_url"], None)
    try:
        pending = {job["job_id"] for job in jobs}
        while pending:
            for job_id in list(pending):
                if (await provider.get_job(job_id)).ended:
                    pending.discard(job_id)
            await asyncio.sleep(0.5)
    finally:
        await provider.close()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        source = write_input(directory / "in.jsonl", rows)
        cache = directory / "cache"
        # The simulator holds the jobs during the timed submission (so answering them does not
        # compete for the CPU with it), then answers them at once.
        knobs = {
            "batch_validating_seconds": 0.01,
            "batch_processing_seconds": 3600,
            "batch_finalizing_seconds": 0.01,
        }
        with run_simulator_process(**knobs) as sim:
            url = sim.openai_base + "/chat/completions"
            run = engine._OfflineRun
            submit_timer = Timer(run, "submit_chunk")
            started, cpu = time.perf_counter(), time.process_time()
            try:
                OfflineStep(source, cache, url).forward(batch_size=4096, progress=False)
                raise SystemExit("the first run finished without submitting: is the step offline?")
            except OfflineBatchGenerationNotFinished as exc:
                jobs = exc.jobs
            submit_seconds = time.perf_counter() - started
            submit_cpu = time.process_time() - cpu
            stats = sim.stats()
            sim.configure(batch_processing_seconds=0.5)
            waited = asyncio.run(wait_for_jobs(jobs))

            ingest_timer = Timer(run, "poll")
            started = time.perf_counter()
            summary = OfflineStep(source, cache, url).forward(batch_size=4096, progress=False)
            rerun_seconds = time.perf_counter() - started
            assert summary.status == "complete" and summary.steps[0].rows_out == rows, summary
            assert sim.stats()["batch_answered"] == rows

    print(f"offline batch benchmark: {rows:,} requests, {len(jobs)} jobs ({stats['files_created']} files)")
    print(
        f"  submit (first run: read, build, record, upload, create): {submit_seconds:6.1f} s wall"
        f" ({submit_cpu:.1f} s client CPU; upload + create {submit_timer.seconds:.1f} s)   target <= 60 s"
    )
    print(f"  simulator answering the jobs (not timed):                 {waited:6.1f} s")
    print(
        f"  ingestion (download, join by custom_id, cache, record):   {ingest_timer.seconds:6.1f} s wall"
        f" = {rows / ingest_timer.seconds:,.0f} rows/s ({ingest_timer.cpu:.1f} s client CPU"
        f" = {rows / max(ingest_timer.cpu, 1e-9):,.0f} rows/s)   target >= 50,000 rows/s"
    )
    print(f"  rerun in all (ingestion, then committing {rows:,} rows):  {rerun_seconds:6.1f} s wall")


if __name__ == "__main__":
    main()
