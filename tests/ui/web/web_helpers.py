"""Helpers of the web page tests: a pipeline project run by the real ``datamill`` command
against the simulator, JSON over HTTP, and snapshots of a cache folder.

The pipeline has three steps — a translation, a filter that drops rows with a reason, and a
summary — and tolerates failed rows, so one run leaves committed, failed and dropped rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROWS = 60
#: The input row whose text is long enough for the page to fold it.
LONG_ROW = 8
#: Debian's chromium and chromium-driver, or the paths in these variables.
CHROMIUM = (
    os.environ.get("DATAMILL_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
CHROMEDRIVER = os.environ.get("DATAMILL_TEST_CHROMEDRIVER") or shutil.which("chromedriver")

PIPELINE_SOURCE = """
import os
import shutil
from pathlib import Path

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.operators.filters import RegexFilter
from datamill.serving.retry import RetryPolicy

HERE = Path(__file__).resolve().parent


class Translate(BatchedPipelineABC):
    allowed_failure_fraction = 0.5

    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(
            str(HERE / "input.jsonl"),
            cache_path=str(HERE / "cache"),
            file_name_prefix="tr",
            cache_type=os.environ.get("TEST_CACHE_TYPE", "jsonl"),
        )
        self.llm = APILLMServing_request(
            api_url=os.environ["TEST_API_URL"],
            max_workers=4,
            retry=RetryPolicy(max_attempts=1),
            use_offline_batch_generation=os.environ.get("TEST_OFFLINE") == "1",
        )
        self.translate = PromptedGenerator(self.llm, user_prompt="Translate to French: ")
        self.keep_even = RegexFilter(r"[02468]$")
        self.summarize = PromptedGenerator(self.llm, user_prompt="Summarize: ")

    def forward(self):
        self.translate.run(self.storage.step(), input_key="text", output_key="fr")
        self.keep_even.run(self.storage.step(), input_key="text")
        self.summarize.run(self.storage.step(), input_key="fr", output_key="summary")
"""


def input_rows() -> list[dict[str, Any]]:
    rows = [{"id": i, "text": f"sentence number {i}", "note": f"Über {i}"} for i in range(ROWS)]
    rows[LONG_ROW]["text"] = (
        f"sentence number {LONG_ROW}, " + "and a tail that goes on, " * 20 + str(LONG_ROW)
    )
    return rows


@dataclass
class Project:
    """A folder with ``pipeline.py`` and ``input.jsonl``; runs write ``cache/``."""

    root: Path
    env: dict[str, str]

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def datamill(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "datamill.cli", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_run(self, batch_size: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "datamill.cli",
                "run",
                "pipeline.py",
                "--batch-size",
                str(batch_size),
                "--quiet",
            ],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def status_json(self) -> dict[str, Any]:
        result = self.datamill("status", str(self.cache.resolve()), "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.loads(reply.read())


def pipeline_id(base: str) -> str:
    pipelines = get_json(f"{base}/api/pipelines")["pipelines"]
    assert len(pipelines) == 1, pipelines
    return str(pipelines[0]["id"])


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime in ns, sha256) of every file under ``folder``, except SQLite's shared-memory
    index (``-shm``), which every reader of a WAL database maps."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith("-shm"):
            stat = path.stat()
            found[str(path.relative_to(folder))] = (
                stat.st_size,
                stat.st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return found
