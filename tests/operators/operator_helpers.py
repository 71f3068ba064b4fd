"""A pipeline built from a list of steps, and file helpers, for the operator tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC
from datamill.serving.retry import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def serving(url: str, **params: Any) -> APILLMServing_request:
    return APILLMServing_request(
        api_url=url, model_name="gpt-4o-mini", max_workers=8, retry=FAST_RETRY, **params
    )


class StepsPipeline(BatchedPipelineABC):
    """``steps`` is a list of ``(operator, run keyword arguments)``, wired in order."""

    def __init__(
        self, source: Path, cache: Path, steps: list[tuple[Any, dict[str, Any]]], **storage: Any
    ) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(source), cache_path=str(cache), file_name_prefix="ops", **storage
        )
        self.steps = steps

    def forward(self) -> None:
        for operator, call in self.steps:
            operator.run(self.storage.step(), **call)


def run_steps(
    source: Path,
    cache: Path,
    steps: list[tuple[Any, dict[str, Any]]],
    *,
    batch_size: int = 4,
    allow_failures: bool = False,
) -> StepsPipeline:
    pipeline = StepsPipeline(source, cache, steps)
    if allow_failures:
        pipeline.allowed_failure_fraction = 1.0
    pipeline.compile()
    pipeline.forward(batch_size=batch_size)
    return pipeline


def drops_table(pipeline: BatchedPipelineABC) -> dict[tuple[int, str], int]:
    """``(step, reason) -> rows`` from the state database's drops table."""
    with sqlite3.connect(pipeline.storage.state_path) as conn:
        return {
            (step, reason): rows
            for step, reason, rows in conn.execute("SELECT step, reason, rows FROM drops")
        }


def failures_table(pipeline: BatchedPipelineABC) -> list[tuple[int, int, str]]:
    with sqlite3.connect(pipeline.storage.state_path) as conn:
        return [
            tuple(r)
            for r in conn.execute("SELECT step, input_row, error FROM failures ORDER BY step, input_row")
        ]
