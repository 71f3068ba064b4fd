"""A four-step pipeline for the executor tests: a CPU map, a filter, a dedup and an LLM step.

Imported by the tests, and run as a script by the driver-kill test (settings from the
environment as ``helpers.subprocess_runs`` passes them: ``IN``, ``CACHE``, ``URL``, ``BATCH``;
the Ray cluster from ``RAY_ADDRESS``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from datamill import (
    APILLMServing_request,
    BatchedFileStorage,
    BatchedPipelineABC,
    ExactDeduplicator,
    FilterOperator,
    MapOperator,
    PromptedGenerator,
)
from datamill.serving.retry import RetryPolicy


def digest(text: str) -> str:
    """A little CPU work per row, with a result that depends on the row."""
    value = text.encode()
    for _ in range(200):
        value = hashlib.sha256(value).digest()
    return value.hex()[:16]


def keep_row(row_id: int) -> bool:
    return row_id % 7 != 3


class FourStepPipeline(BatchedPipelineABC):
    def __init__(
        self, input_path: Path | str, cache_path: Path | str, api_url: str, *, digest_fn: Any = digest
    ):
        super().__init__()
        self.storage = BatchedFileStorage(
            str(input_path), cache_path=str(cache_path), file_name_prefix="four", cache_type="jsonl"
        )
        self.llm = APILLMServing_request(
            api_url=api_url, model_name="ray-model", max_workers=8, retry=RetryPolicy(base_delay=0.01)
        )
        self.digest = MapOperator(digest_fn)
        self.keep = FilterOperator(keep_row)
        self.dedup = ExactDeduplicator()
        self.answer = PromptedGenerator(self.llm, system_prompt="Answer briefly:")

    def forward(self) -> None:
        self.digest.run(self.storage.step(), input_key="text", output_key="digest")
        self.keep.run(self.storage.step(), input_key="id")
        self.dedup.run(self.storage.step(), input_key="text")
        self.answer.run(self.storage.step(), input_key="text", output_key="answer")


def write_input(path: Path, rows: int) -> Path:
    """``rows`` rows whose texts repeat every 40 rows, so the dedup step drops some."""
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            handle.write(
                json.dumps({"id": index, "text": f"text number {index % 40} of the Ray tests"}) + "\n"
            )
    return path


def expected_ids(rows: int) -> list[list[int]]:
    """The ids each step's output holds, in order."""
    every = list(range(rows))
    kept = [i for i in every if keep_row(i)]
    seen: set[int] = set()
    unique = []
    for i in kept:
        if i % 40 not in seen:
            seen.add(i % 40)
            unique.append(i)
    return [every, kept, unique, unique]


if __name__ == "__main__":
    from datamill.pipeline.ray_executor import RayExecutor

    pipeline = FourStepPipeline(os.environ["IN"], os.environ["CACHE"], os.environ["URL"])
    pipeline.forward(batch_size=int(os.environ["BATCH"]), resume_from_last=True, executor=RayExecutor())
