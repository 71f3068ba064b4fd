"""Pipelines and helpers for the offline batch tests."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from datamill import (
    APILLMServing_request,
    BatchedFileStorage,
    BatchedPipelineABC,
    OfflineBatchGenerationNotFinished,
    PromptedGenerator,
)
from datamill.pipeline.summary import RunSummary

# A fast provider: jobs validate, run and finalise within a fraction of a second.
FAST_BATCHES = {
    "batch_validating_seconds": 0.01,
    "batch_processing_seconds": 0.1,
    "batch_finalizing_seconds": 0.01,
}


def write_questions(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({"id": index, "q": f"question {index}"}) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class OfflinePipeline(BatchedPipelineABC):
    """One offline step (answer), optionally followed by an online step (judge)."""

    allowed_failure_fraction = 0.0

    def __init__(
        self,
        input_path: Path,
        cache_path: Path,
        base_url: str,
        *,
        online_judge: bool = False,
        block: float | None = None,
        model: str = "gpt-4o-mini",
    ) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(input_path), cache_path=str(cache_path), file_name_prefix="off")
        self.batch_llm = APILLMServing_request(
            api_url=base_url + "/chat/completions",
            model_name=model,
            use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=block,
        )
        self.answer = PromptedGenerator(self.batch_llm, user_prompt="Q: ")
        self.online_judge = online_judge
        if online_judge:
            self.online_llm = APILLMServing_request(api_url=base_url + "/chat/completions", model_name=model)
            self.judge = PromptedGenerator(self.online_llm, user_prompt="Judge: ")

    def forward(self) -> None:
        self.answer.run(self.storage.step(), input_key="q", output_key="a")
        if self.online_judge:
            self.judge.run(self.storage.step(), input_key="a", output_key="verdict")


def run_until_done(make_pipeline: Any, *, timeout: float = 30.0) -> tuple[RunSummary, int]:
    """Rerun a fresh pipeline until it stops raising ``...NotFinished``; returns (summary, reruns)."""
    deadline = time.monotonic() + timeout
    runs = 0
    while True:
        runs += 1
        try:
            return make_pipeline().forward(batch_size=16), runs
        except OfflineBatchGenerationNotFinished:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def job_rows(state_path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(state_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM offline_batch_jobs ORDER BY created_at")]
    finally:
        conn.close()


def cached_responses(state_path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(state_path)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT response FROM request_cache")]
    finally:
        conn.close()


def assert_rows_match_input(rows: list[dict[str, Any]], count: int) -> None:
    assert [row["id"] for row in rows] == list(range(count))
    for row in rows:
        assert row["a"].endswith(f"Q: question {row['id']}"), row
