"""One process runs a cache at a time; a dead holder's lock is taken over."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import AnswerPipeline, questions, write_jsonl

from datamill.errors import CacheLockedError

RUN_PIPELINE = """
import sys
sys.path.insert(0, sys.argv[4])
from pathlib import Path
from engine_helpers import AnswerPipeline
AnswerPipeline(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], max_workers=1).forward(batch_size=1)
"""


def wait_for_holder(lock_path: Path, pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_path.exists() and lock_path.read_text().strip() == str(pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never took {lock_path}")


def test_a_second_process_on_the_same_cache_gets_the_holders_pid(make_simulator, tmp_path: Path) -> None:
    sim = make_simulator(latency_mean=0.5)
    source = write_jsonl(tmp_path / "in.jsonl", questions(40))
    cache = tmp_path / "cache"
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUN_PIPELINE,
            str(source),
            str(cache),
            sim.openai_base,
            str(Path(__file__).parent),
        ]
    )
    try:
        wait_for_holder(cache / "ans.lock", runner.pid)
        p = AnswerPipeline(source, cache, sim.openai_base)
        with pytest.raises(CacheLockedError, match=rf"held by PID {runner.pid}\b"):
            p.forward(batch_size=4)
    finally:
        runner.kill()
        runner.wait()

    sim.configure(latency_mean=0.0)
    summary = AnswerPipeline(source, cache, sim.openai_base).forward(batch_size=4)
    assert summary.status == "complete"
    assert [int(row["id"]) for row in AnswerPipeline(source, cache, sim.openai_base).rows()] == list(
        range(40)
    )


def test_a_stale_lock_file_from_a_finished_process_is_taken_over(simulator, tmp_path: Path, caplog) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ans.lock").write_text(finished.stdout.strip() + "\n")
    source = write_jsonl(tmp_path / "in.jsonl", questions(5))
    with caplog.at_level(logging.INFO, logger="datamill.core.lock"):
        summary = AnswerPipeline(source, cache, simulator.openai_base).forward(batch_size=2)
    assert summary.status == "complete"
    assert f"took over the lock of PID {finished.stdout.strip()}" in caplog.text
    assert (cache / "ans.lock").read_text() == ""  # released, no PID left behind
