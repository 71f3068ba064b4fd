"""Pipelines written the way users write them, and small file helpers, for the engine tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.serving.retry import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
NO_RETRY = RetryPolicy(max_attempts=1)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def questions(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "question": f"question number {i}"} for i in range(count)]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def failures_table(pipeline: BatchedPipelineABC) -> list[tuple[int, int, str]]:
    """``(step, input_row, error)`` rows of the state database's failures table."""
    conn = sqlite3.connect(pipeline.storage.state_path)
    try:
        return [
            tuple(r)
            for r in conn.execute("SELECT step, input_row, error FROM failures ORDER BY step, input_row")
        ]
    finally:
        conn.close()


class StoppableGenerator(PromptedGenerator):
    """A ``PromptedGenerator`` whose ``apply_responses`` raises at the row with ``id == _stop_at``.

    Underscored attributes stay out of the step fingerprint, so arming it changes nothing else.
    """

    _stop_at: int | None = None
    _stop_with: type[BaseException] = RuntimeError

    def apply_responses(self, row, responses, call):  # type: ignore[no-untyped-def]
        if self._stop_at is not None and int(row["id"]) == self._stop_at:
            raise self._stop_with(f"stopped by the test at row {self._stop_at}")
        return super().apply_responses(row, responses, call)


class QAPipeline(BatchedPipelineABC):
    """Answer each question, then judge each answer: two LLM steps on one serving."""

    def __init__(
        self,
        input_path: Path,
        cache_path: Path,
        api_url: str,
        *,
        cache_type: str = "jsonl",
        answer_prompt: str = "Answer briefly: ",
        judge_prompt: str = "Judge this answer: ",
        model_name: str = "gpt-4o-mini",
        max_workers: int = 8,
        temperature: float | None = None,
        retry: RetryPolicy = FAST_RETRY,
        api_key: str | None = None,
        answer_key: str = "answer",
        input_key: str = "question",
    ) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(input_path), cache_path=str(cache_path), file_name_prefix="qa", cache_type=cache_type
        )
        self.llm = APILLMServing_request(
            api_url=api_url,
            model_name=model_name,
            max_workers=max_workers,
            temperature=temperature,
            retry=retry,
            api_key=api_key,
        )
        self.answerer = StoppableGenerator(
            self.llm, system_prompt="You are terse.", user_prompt=answer_prompt
        )
        self.judge = StoppableGenerator(self.llm, user_prompt=judge_prompt)
        self.answer_key = answer_key
        self.input_key = input_key

    def forward(self) -> None:
        self.answerer.run(self.storage.step(), input_key=self.input_key, output_key=self.answer_key)
        self.judge.run(self.storage.step(), input_key=self.answer_key, output_key="verdict")


class AnswerPipeline(BatchedPipelineABC):
    """One LLM step: the simplest pipeline, for counting requests exactly."""

    def __init__(
        self,
        input_path: Path,
        cache_path: Path,
        api_url: str,
        *,
        cache_type: str = "jsonl",
        retry: RetryPolicy = NO_RETRY,
        api_key: str | None = None,
        max_workers: int = 8,
    ) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(input_path), cache_path=str(cache_path), file_name_prefix="ans", cache_type=cache_type
        )
        self.llm = APILLMServing_request(
            api_url=api_url, model_name="gpt-4o-mini", max_workers=max_workers, retry=retry, api_key=api_key
        )
        self.answerer = PromptedGenerator(self.llm, user_prompt="Answer: ")

    def forward(self) -> None:
        self.answerer.run(self.storage.step(), input_key="question", output_key="answer")
