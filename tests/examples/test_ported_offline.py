"""distilabel's offline batch example, ported by its imports, against the simulator's Batch API.

The example (``examples/ported/distilabel_offline_batch_generation.py``) runs unchanged in a
child process through a wrapper that prints the ``Distiset`` it returns; the simulator lives in
the test process, so it outlives every kill, and its knobs decide when jobs finish. The 12 rows
fit in one Batch API job (one chunk).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = "distilabel_offline_batch_generation.py"
PORTED = Path(__file__).resolve().parents[2] / "examples" / "ported"
ENDPOINT = "http://127.0.0.1:8000/v1"
ROWS = 12
CHUNKS = 1

WRAPPER = f"""
import json, runpy, sys, time
distiset = runpy.run_path({EXAMPLE!r}, run_name="__main__")["distiset"]
print(f"RETURNED {{time.time()}}", file=sys.stderr, flush=True)
rows = list(distiset["default"]["train"]) if "default" in distiset else []
print("RESULT " + json.dumps({{"configs": sorted(distiset), "pending": len(distiset.pending_jobs), "rows": rows}}))
"""


class PortedExample:
    """The ported example in its own directory, pointed at one simulator."""

    def __init__(self, work: Path, base_url: str) -> None:
        shutil.copytree(PORTED, work, ignore=shutil.ignore_patterns("cache_*", "__pycache__"))
        script = work / EXAMPLE
        script.write_text(script.read_text(encoding="utf-8").replace(ENDPOINT, base_url), encoding="utf-8")
        (work / "show.py").write_text(WRAPPER, encoding="utf-8")
        self.work = work
        self.cache = work / "distilabel_cache"

    def env(self, fault: str | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "DISTILABEL_CACHE_DIR": str(self.cache),
            "HF_DATASETS_CACHE": str(self.work / "hf_cache"),
            "HF_DATASETS_OFFLINE": "1",
        }
        env.pop("DATAMILL_FAULT", None)
        if fault:
            env["DATAMILL_FAULT"] = fault
        return env

    def block_until_done(self, seconds: float) -> None:
        script = self.work / EXAMPLE
        text = script.read_text(encoding="utf-8")
        script.write_text(
            text.replace(
                "use_offline_batch_generation=True,",
                f"use_offline_batch_generation=True, offline_batch_generation_block_until_done={seconds},",
            ),
            encoding="utf-8",
        )

    def run(self, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "show.py"],
            cwd=self.work,
            env=self.env(fault),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def result(self, done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        assert done.returncode == 0, done.stderr
        line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
        return json.loads(line[len("RESULT ") :])

    def run_until_done(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.result(self.run())
            if not result["pending"]:
                return result
            assert time.monotonic() < deadline, result
            time.sleep(0.2)


def assert_every_row_generated(result: dict[str, Any]) -> None:
    assert result["configs"] == ["default"]
    rows = result["rows"]
    assert [row["id"] for row in rows] == list(range(ROWS))
    for row in rows:
        assert row["generation"].endswith(row["instruction"]) and row["model_name"] == "gpt-3.5-turbo"


@pytest.fixture
def batches(make_simulator):
    return make_simulator(
        batch_validating_seconds=0.01,
        batch_processing_seconds=60,
        batch_finalizing_seconds=0.01,
    )


def test_first_run_submits_and_stops_pending_rerun_submits_nothing_then_collects(
    batches, tmp_path: Path
) -> None:
    example = PortedExample(tmp_path / "work", batches.openai_base)
    first = example.result(example.run())
    assert first == {"configs": [], "pending": CHUNKS, "rows": []}
    assert (batches.stats()["files_created"], batches.stats()["batches_created"]) == (CHUNKS, CHUNKS)

    again = example.run()
    assert example.result(again)["pending"] == CHUNKS
    assert "not finished" in again.stderr
    assert (batches.stats()["files_created"], batches.stats()["batches_created"]) == (CHUNKS, CHUNKS)

    batches.configure(batch_processing_seconds=0.05)
    assert_every_row_generated(example.run_until_done())
    stats = batches.stats(detail=True)
    assert (stats["batches_created"], stats["batch_requests"], stats["requests"]) == (CHUNKS, ROWS, 0)
    assert stats["duplicate_client_keys"] == []


@pytest.mark.parametrize(
    "fault", ["offline_after_intent:1", "offline_after_upload:1", "offline_after_create:1"]
)
def test_sigkill_during_submission_then_rerun_creates_no_second_job_for_any_chunk(
    batches, tmp_path: Path, fault: str
) -> None:
    batches.configure(batch_processing_seconds=0.1)
    example = PortedExample(tmp_path / "work", batches.openai_base)
    killed = example.run(fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    created = 1 if fault.startswith("offline_after_create") else 0
    uploaded = 0 if fault.startswith("offline_after_intent") else 1
    assert (batches.stats()["files_created"], batches.stats()["batches_created"]) == (uploaded, created)

    assert_every_row_generated(example.run_until_done())
    stats = batches.stats(detail=True)
    assert (stats["files_created"], stats["batches_created"], stats["batch_answered"]) == (
        CHUNKS,
        CHUNKS,
        ROWS,
    )
    assert stats["duplicate_client_keys"] == []


def test_ctrl_c_while_blocking_stops_polling_within_a_second(batches, tmp_path: Path) -> None:
    example = PortedExample(tmp_path / "work", batches.openai_base)
    example.block_until_done(5)
    proc = subprocess.Popen(
        [sys.executable, "show.py"],
        cwd=example.work,
        env=example.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while batches.stats()["batches_created"] < CHUNKS:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # now waiting 5 s between polls
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # pipeline.run has returned within a second of the signal (the interpreter's exit comes after).
    returned = float(next(line for line in stderr.splitlines() if line.startswith("RETURNED ")).split()[1])
    assert returned - sent < 1.0, returned - sent
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert example.result(done)["pending"] == CHUNKS
    assert "polling was interrupted" in stderr
    batches.configure(batch_processing_seconds=0.05)
    assert_every_row_generated(example.run_until_done())
    assert batches.stats()["batches_created"] == CHUNKS
