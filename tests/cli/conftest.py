"""Fixtures for driving the real ``datamill`` command in a subprocess against the simulator.

The pipeline file is written the way users write one; it reads the simulator's URL and its
knobs from environment variables, since ``datamill run`` instantiates it with no arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datamill.simulator.server import SimulatorHandle, run_simulator

ROWS = 60

PIPELINE_SOURCE = """
import os
from pathlib import Path

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.serving.retry import RetryPolicy

HERE = Path(__file__).resolve().parent


class Translate(BatchedPipelineABC):
    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(
            str(HERE / os.environ.get("TEST_INPUT", "input.jsonl")),
            cache_path=str(HERE / "cache"),
            file_name_prefix="tr",
        )
        self.llm = APILLMServing_request(
            api_url=os.environ["TEST_API_URL"],
            max_workers=4,
            retry=RetryPolicy(max_attempts=1),
            use_offline_batch_generation=os.environ.get("TEST_OFFLINE") == "1",
        )
        self.translate = PromptedGenerator(self.llm, user_prompt="Translate to French: ")
        self.summarize = PromptedGenerator(self.llm, user_prompt="Summarize: ")

    def forward(self):
        self.translate.run(self.storage.step(), input_key="text", output_key="fr")
        self.summarize.run(self.storage.step(), input_key="fr", output_key="summary")
"""


@dataclass
class Project:
    """A folder with ``pipeline.py``, ``input.jsonl`` and (after a run) ``cache/``."""

    root: Path
    env: dict[str, str]

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline.py"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def datamill(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m datamill.cli ARGS`` with stdout and stderr piped."""
        return subprocess.run(
            [sys.executable, "-m", "datamill.cli", *args],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    with run_simulator(latency_mean=0.005) as handle:
        yield handle


@pytest.fixture
def project(tmp_path: Path, simulator: SimulatorHandle) -> Project:
    (tmp_path / "pipeline.py").write_text(PIPELINE_SOURCE, encoding="utf-8")
    rows = [{"id": i, "text": f"sentence number {i}"} for i in range(ROWS)]
    (tmp_path / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAMILL_")}
    env.update(TEST_API_URL=simulator.openai_base, COLUMNS="200", NO_COLOR="1")
    return Project(tmp_path, env)
