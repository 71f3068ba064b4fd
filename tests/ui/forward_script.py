"""A plain user script for the console tests: ``python forward_script.py DIR MODE``.

MODE ``stop`` fails at row 300 (after some batches are committed), ``run`` runs to the end,
``changed`` runs with another system prompt, ``offline`` submits Batch API jobs that take a
minute and leaves them pending.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.simulator import run_simulator


class StoppingGenerator(PromptedGenerator):
    _stop_at: int | None = None

    def apply_responses(self, row, responses, call):  # type: ignore[no-untyped-def]
        if self._stop_at is not None and int(row["id"]) == self._stop_at:
            raise RuntimeError(f"stopped by the script at row {self._stop_at}")
        return super().apply_responses(row, responses, call)


class Pipeline(BatchedPipelineABC):
    def __init__(self, directory: Path, serving: APILLMServing_request, system_prompt: str) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(directory / "in.jsonl"), cache_path=str(directory / "cache"), file_name_prefix="demo"
        )
        self.gen = StoppingGenerator(serving, system_prompt=system_prompt, user_prompt="Say: ")

    def forward(self) -> None:
        self.gen.run(self.storage.step(), input_key="text", output_key="reply")


def main(directory: Path, mode: str) -> None:
    source = directory / "in.jsonl"
    if not source.exists():
        source.write_text("".join(json.dumps({"id": i, "text": f"row {i}"}) + "\n" for i in range(600)))
    with run_simulator(latency_mean=0.02, batch_processing_seconds=60.0) as sim:
        serving = APILLMServing_request(
            sim.openai_base, max_workers=8, use_offline_batch_generation=mode == "offline"
        )
        pipeline = Pipeline(directory, serving, "Be terse." if mode == "changed" else "Be brief.")
        if mode == "stop":
            pipeline.gen._stop_at = 300
        pipeline.forward(batch_size=50)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
