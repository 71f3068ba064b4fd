"""Helpers shared by the benchmarks: input files and a one-step pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamill.operators.generate import PromptedGenerator
from datamill.pipeline.base import BatchedPipelineABC
from datamill.pipeline.storage import BatchedFileStorage
from datamill.serving.openai_compat import APILLMServing_request
from datamill.serving.retry import RetryPolicy


def write_input(path: Path, rows: int, tag: str = "") -> Path:
    """``rows`` distinct short texts, one JSON object per line."""
    with path.open("w") as handle:
        for index in range(rows):
            handle.write(json.dumps({"id": index, "raw_content": f"benchmark row {tag}{index}"}) + "\n")
    return path


class OneStepPipeline(BatchedPipelineABC):
    """``source``: a path, or anything else ``first_entry_file_name`` accepts (a Dataset, …)."""

    def __init__(self, source: Path | Any, cache: Path, api_url: str, max_workers: int) -> None:
        super().__init__()
        first = str(source) if isinstance(source, Path) else source
        self.storage = BatchedFileStorage(first, cache_path=str(cache), file_name_prefix="bench")
        self.llm = APILLMServing_request(
            api_url=api_url,
            model_name="bench-model",
            max_workers=max_workers,
            retry=RetryPolicy(base_delay=0.05),
        )
        self.generate = PromptedGenerator(llm_serving=self.llm, system_prompt="Translate into Chinese:")

    def forward(self) -> None:
        self.generate.run(self.storage.step(), input_key="raw_content", output_key="out")
