"""Crashes and Ctrl-C around offline batch submission, in real subprocesses.

The pipeline runs in a child process against the simulator of the test process (which outlives
every kill). ``DATAMILL_FAULT`` kills the child with SIGKILL between recording a chunk's intent
and uploading, between upload and job creation, and between creation and recording the job id;
the rerun must leave exactly one job per chunk and pay for no request twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from offline_helpers import assert_rows_match_input, job_rows, read_jsonl, write_questions

ROWS = 60
PENDING = 75

SCRIPT = """
import os, sys
from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill import OfflineBatchGenerationNotFinished

class P(BatchedPipelineABC):
    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(os.environ["IN"], cache_path=os.environ["CACHE"], file_name_prefix="off")
        block = os.environ.get("BLOCK")
        self.llm = APILLMServing_request(api_url=os.environ["URL"] + "/chat/completions", model_name="gpt-4o-mini",
                                         use_offline_batch_generation=True,
                                         offline_batch_generation_block_until_done=float(block) if block else None)
        self.gen = PromptedGenerator(self.llm, user_prompt="Q: ")
    def forward(self):
        self.gen.run(self.storage.step(), input_key="q", output_key="a")

try:
    P().forward(batch_size=16)
except OfflineBatchGenerationNotFinished as exc:
    print("NOT FINISHED:", exc, file=sys.stderr)
    print("JOBS:", [j["job_id"] for j in exc.jobs], file=sys.stderr)
    sys.exit(exc.exit_code)
"""


@pytest.fixture
def child(tmp_path: Path):
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    source = write_questions(tmp_path / "in.jsonl", ROWS)
    cache = tmp_path / "cache"

    def env(url: str, fault: str | None = None, block: float | None = None) -> dict[str, str]:
        values = {**os.environ, "IN": str(source), "CACHE": str(cache), "URL": url}
        values.pop("DATAMILL_FAULT", None)
        if fault:
            values["DATAMILL_FAULT"] = fault
        if block:
            values["BLOCK"] = str(block)
        return values

    def run(url: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script)], env=env(url, fault), capture_output=True, text=True, timeout=60
        )

    run.script = script  # type: ignore[attr-defined]
    run.env = env  # type: ignore[attr-defined]
    run.cache = cache  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    "fault", ["offline_after_intent:1", "offline_after_upload:1", "offline_after_create:1"]
)
def test_sigkill_during_submission_leaves_one_job_per_chunk(make_simulator, child, fault: str) -> None:
    sim = make_simulator(
        batch_validating_seconds=0.01, batch_processing_seconds=0.2, batch_finalizing_seconds=0.01
    )
    killed = child(sim.openai_base, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    point = fault.split(":")[0]
    expected_files = 0 if point == "offline_after_intent" else 1
    expected_batches = 1 if point == "offline_after_create" else 0
    stats = sim.stats()
    assert (stats["files_created"], stats["batches_created"]) == (expected_files, expected_batches)

    rerun = child(sim.openai_base)
    assert rerun.returncode in (0, PENDING), rerun.stderr  # an adopted job may be done already
    stats = sim.stats()
    # The uploaded file is reused and the created job adopted: still one of each.
    assert (stats["files_created"], stats["batches_created"]) == (1, 1), rerun.stderr
    deadline = time.monotonic() + 30
    done = rerun
    while done.returncode != 0:
        done = child(sim.openai_base)
        if done.returncode == 0:
            break
        assert done.returncode == PENDING and time.monotonic() < deadline, done.stderr
        time.sleep(0.2)
    assert_rows_match_input(read_jsonl(child.cache / "off_step1.jsonl"), ROWS)
    stats = sim.stats(detail=True)
    assert (stats["files_created"], stats["batches_created"], stats["batch_answered"]) == (1, 1, ROWS)
    assert stats["duplicate_client_keys"] == []
    jobs = job_rows(child.cache / "off.state.db")
    assert len(jobs) == 1 and jobs[0]["state"] == "collected"


def test_sigint_while_blocking_stops_within_a_second_and_resumes(make_simulator, child) -> None:
    sim = make_simulator(
        batch_validating_seconds=0.01, batch_processing_seconds=60, batch_finalizing_seconds=0.01
    )
    proc = subprocess.Popen(
        [sys.executable, str(child.script)],
        env=child.env(sim.openai_base, block=5.0),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while sim.stats()["batches_created"] < 1:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # now polling (waiting 5 s between polls)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == PENDING, stderr
    assert elapsed < 1.5, elapsed
    assert "polling was interrupted" in stderr
    jobs = job_rows(child.cache / "off.state.db")
    assert len(jobs) == 1 and jobs[0]["state"] == "submitted" and jobs[0]["job_id"]
    # Resumable: the next (non-blocking) run polls the same job and submits nothing.
    again = child(sim.openai_base)
    assert again.returncode == PENDING
    assert json.dumps(jobs[0]["job_id"])[1:-1] in again.stderr
    assert sim.stats()["batches_created"] == 1 and sim.stats()["files_created"] == 1


STORING_SCRIPT = """
import os, sys
from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill import OfflineBatchGenerationNotFinished
from datamill.serving.anthropic import AnthropicLLMServing

class P(BatchedPipelineABC):
    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(os.environ["IN"], cache_path=os.environ["CACHE"], file_name_prefix="off")
        if os.environ["PROVIDER"] == "anthropic":
            self.llm = AnthropicLLMServing(api_url=os.environ["URL"], model_name="claude-3-5-haiku-latest",
                                           use_offline_batch_generation=True,
                                           offline_batch_generation_block_until_done=0.05)
        else:
            self.llm = APILLMServing_request(api_url=os.environ["URL"] + "/chat/completions",
                                             model_name="gpt-4o-mini", use_offline_batch_generation=True,
                                             offline_batch_generation_block_until_done=0.05)
        self.gen = PromptedGenerator(self.llm, user_prompt="Q: ")
    def forward(self):
        self.gen.run(self.storage.step(), input_key="q", output_key="a")

try:
    P().forward(batch_size=64)
except OfflineBatchGenerationNotFinished as exc:
    sys.exit(exc.exit_code)
except KeyboardInterrupt:
    sys.exit(130)
"""

STORING_ROWS = 2000


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_sigint_while_results_are_stored_never_kills_the_interpreter(
    make_simulator, tmp_path, provider
) -> None:
    """Ctrl-C at any moment of a blocking run (polling, storing results, committing) ends with
    exit 75 or 130, never a signal death; the next run completes paying for nothing twice."""
    sim = make_simulator(
        batch_validating_seconds=0.01, batch_processing_seconds=0.05, batch_finalizing_seconds=0.01
    )
    script = tmp_path / "storing.py"
    script.write_text(STORING_SCRIPT)
    url = sim.anthropic_base if provider == "anthropic" else sim.openai_base
    rng = __import__("random").Random(provider)
    for trial in range(10):
        source = tmp_path / f"in-{trial}.jsonl"
        source.write_text(
            "".join(
                json.dumps({"id": i, "q": f"trial {trial} question {i}"}) + "\n" for i in range(STORING_ROWS)
            )
        )
        env = {**os.environ, "IN": str(source), "CACHE": str(tmp_path / f"cache-{trial}"), "URL": url}
        env["PROVIDER"] = provider
        env.pop("DATAMILL_FAULT", None)
        proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while sim.stats()["batches_created"] <= trial:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))  # somewhere in polling, storing or committing
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        if proc.returncode == -signal.SIGINT:  # Ctrl-C after the run had ended, as Python exited
            assert "run complete" in stderr, stderr
        else:
            assert proc.returncode >= 0, f"died of signal {-proc.returncode}:\n{stderr}"
            assert proc.returncode in (0, PENDING, 130), (proc.returncode, stderr)
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        rows = read_jsonl(tmp_path / f"cache-{trial}" / "off_step1.jsonl")
        assert [row["id"] for row in rows] == list(range(STORING_ROWS))
    stats = sim.stats(detail=True)
    assert stats["batches_created"] == 10 and stats["batch_answered"] == 10 * STORING_ROWS
    assert stats["duplicate_client_keys"] == [] and stats["requests"] == 0


def test_a_create_that_lands_after_the_client_gave_up_is_adopted_not_repeated(make_simulator, child) -> None:
    """The provider commits the batch 6 s after the create was sent; the client is killed while
    waiting and rerun at once: the rerun waits for the create to land rather than create again."""
    sim = make_simulator(
        batch_create_delay_seconds=6.0,
        batch_validating_seconds=0.01,
        batch_processing_seconds=0.2,
        batch_finalizing_seconds=0.01,
    )
    proc = subprocess.Popen([sys.executable, str(child.script)], env=child.env(sim.openai_base))
    try:
        deadline = time.monotonic() + 30
        while sim.stats()["files_created"] < 1:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)  # the create is on the wire, unanswered
    finally:
        proc.kill()
        proc.wait()
    assert sim.stats()["batches_created"] == 0

    done = child(sim.openai_base)
    deadline = time.monotonic() + 30
    while done.returncode != 0:
        assert done.returncode == PENDING and time.monotonic() < deadline, done.stderr
        time.sleep(0.2)
        done = child(sim.openai_base)
    assert_rows_match_input(read_jsonl(child.cache / "off_step1.jsonl"), ROWS)
    stats = sim.stats(detail=True)
    assert (stats["files_created"], stats["batches_created"], stats["batch_answered"]) == (1, 1, ROWS)
    assert stats["duplicate_client_keys"] == []
