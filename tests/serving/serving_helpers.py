"""A one-step pipeline over any serving, and small file helpers, for the serving tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamill import BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.serving.base import LLMServingABC
from datamill.serving.retry import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05)


def write_rows(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": f"row number {i}"}) + "\n" for i in range(count)))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class OneStepPipeline(BatchedPipelineABC):
    """``PromptedGenerator`` over ``text`` into ``reply``, with the serving given."""

    def __init__(self, input_path: Path, cache_path: Path, serving: LLMServingABC, **attrs: Any) -> None:
        super().__init__()
        for name, value in attrs.items():
            setattr(self, name, value)
        self.storage = BatchedFileStorage(str(input_path), cache_path=str(cache_path), file_name_prefix="one")
        self.llm = serving
        self.gen = PromptedGenerator(serving, system_prompt="Be brief.", user_prompt="Say: ")

    def forward(self) -> None:
        self.gen.run(self.storage.step(), input_key="text", output_key="reply")
