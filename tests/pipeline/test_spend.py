"""Spend recorded by the ledger equals what the simulator billed, however a run went.

Each test runs real pipelines against the simulator, whose accounting counts every token it
bills (online replies and Batch API lines alike), and compares with the cache's spend records
(``StateDB.spend``): tokens within 1 %, paid calls exactly, across every run of the cache.
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
from helpers.subprocess_runs import run_pipeline_script

from datamill import (
    APILLMServing_request,
    BatchedFileStorage,
    BatchedPipelineABC,
    OfflineBatchGenerationNotFinished,
    PromptedGenerator,
)
from datamill.core.state import StateDB
from datamill.serving.pricing import resolve_price


class OneStep(BatchedPipelineABC):
    def __init__(
        self, source: Path, cache: Path, url: str, *, prompt: str = "Answer: ", offline: bool = False
    ):
        super().__init__()
        self.storage = BatchedFileStorage(str(source), cache_path=str(cache), file_name_prefix="spend")
        self.llm = APILLMServing_request(
            api_url=url + "/chat/completions",
            model_name="gpt-4o-mini",
            max_workers=8,
            use_offline_batch_generation=offline,
        )
        self.gen = PromptedGenerator(self.llm, user_prompt=prompt)

    def forward(self) -> None:
        self.gen.run(self.storage.step(), input_key="q", output_key="a")


def _write(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "q": q}) + "\n" for i, q in enumerate(questions)))
    return path


def _recorded(cache: Path) -> tuple[int, int, int, float | None]:
    db = StateDB.open_readonly(cache / "spend.state.db")
    try:
        spend = db.spend()
    finally:
        db.close()
    return spend.requests, spend.prompt_tokens, spend.completion_tokens, spend.cost_usd


def _billed(sim) -> tuple[int, int, int]:
    stats = sim.stats()
    return (
        stats["answered"] + stats.get("batch_answered", 0),
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )


def _assert_equal(recorded, billed) -> None:
    requests, prompt, completion, _ = recorded
    assert requests == billed[0]
    assert prompt == pytest.approx(billed[1], rel=0.01) and completion == pytest.approx(billed[2], rel=0.01)


def test_three_runs_with_different_prompts_add_up(simulator, tmp_path: Path) -> None:
    sim = simulator
    source = _write(tmp_path / "in.jsonl", [f"question {i}" for i in range(20)])
    cache = tmp_path / "cache"
    costs = []
    for prompt in ("Answer: ", "Answer briefly: ", "Answer at length: "):
        summary = OneStep(source, cache, sim.openai_base, prompt=prompt).forward(batch_size=4)
        costs.append(summary.cost_usd)
    recorded = _recorded(cache)
    _assert_equal(recorded, _billed(sim))
    assert recorded[0] == 60
    assert recorded[3] == pytest.approx(sum(costs), rel=1e-9)
    assert summary.total_cost_usd == pytest.approx(sum(costs), rel=1e-9)  # the last summary: all runs


def test_identical_rows_at_batch_size_1_are_paid_and_recorded_once(simulator, tmp_path: Path) -> None:
    sim = simulator
    source = _write(tmp_path / "in.jsonl", ["the same question"] * 10)
    summary = OneStep(source, tmp_path / "cache", sim.openai_base).forward(batch_size=1)
    assert sim.stats()["answered"] == 1
    _assert_equal(_recorded(tmp_path / "cache"), _billed(sim))
    step = summary.steps[0]
    assert step.requests_paid == 1
    assert (step.prompt_tokens, step.completion_tokens) == _billed(sim)[1:]


def test_an_offline_step_with_failed_lines_resubmitted_records_every_paid_line(
    make_simulator, tmp_path
) -> None:
    sim = make_simulator(
        batch_failed_line_rate=0.1,
        seed=3,
        batch_validating_seconds=0.01,
        batch_processing_seconds=0.1,
        batch_finalizing_seconds=0.01,
    )
    source = _write(tmp_path / "in.jsonl", [f"question {i}" for i in range(200)])
    cache = tmp_path / "cache"
    deadline = time.monotonic() + 60
    while True:
        try:
            summary = OneStep(source, cache, sim.openai_base, offline=True).forward(batch_size=16)
            break
        except OfflineBatchGenerationNotFinished:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert summary.status == "complete"
    stats = sim.stats()
    assert stats["batch_answered"] == 200 and stats["answered"] == 0
    recorded = _recorded(cache)
    _assert_equal(recorded, _billed(sim))
    price = resolve_price("gpt-4o-mini")
    assert price is not None
    expected = price.cost(stats["prompt_tokens"], stats["completion_tokens"], offline=True)
    assert recorded[3] == pytest.approx(expected, rel=0.01)  # at the Batch API's discount


SCRIPT = """
import os
from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator

class P(BatchedPipelineABC):
    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(os.environ["IN"], cache_path=os.environ["CACHE"], file_name_prefix="spend")
        self.llm = APILLMServing_request(api_url=os.environ["URL"], model_name="gpt-4o-mini", max_workers=8)
        self.gen = PromptedGenerator(self.llm, user_prompt="Answer: ")
    def forward(self):
        self.gen.run(self.storage.step(), input_key="q", output_key="a")

P().forward(batch_size=int(os.environ["BATCH"]))
"""


def test_a_sigkilled_run_and_its_resume_record_every_received_response_once(make_simulator, tmp_path) -> None:
    sim = make_simulator(latency_mean=0.01, latency_jitter=0.01)
    source = _write(tmp_path / "in.jsonl", [f"question {i}" for i in range(400)])
    script = tmp_path / "p.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    url = sim.openai_base + "/chat/completions"
    assert run_pipeline_script(script, source, cache, url, 8, kill_after=0.8) == -signal.SIGKILL
    assert run_pipeline_script(script, source, cache, url, 8) == 0
    requests, prompt, completion, _ = _recorded(cache)
    billed = _billed(sim)
    # Never more than billed; short only by the calls on the wire at the kill (max_workers).
    assert requests <= billed[0] <= requests + 8
    assert prompt <= billed[1] and completion <= billed[2]
    assert billed[2] - completion <= 8 * max(1, billed[2] // billed[0]) * 2


def test_ctrl_c_and_a_resume_record_what_the_simulator_billed(make_simulator, tmp_path) -> None:
    sim = make_simulator(latency_mean=0.01, latency_jitter=0.01)
    source = _write(tmp_path / "in.jsonl", [f"question {i}" for i in range(400)])
    script = tmp_path / "p.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    env = {**os.environ, "IN": str(source), "CACHE": str(cache), "URL": sim.openai_base + "/chat/completions"}
    env["BATCH"] = "8"
    env.pop("DATAMILL_FAULT", None)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while sim.stats()["answered"] < 50:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert subprocess.run([sys.executable, str(script)], env=env, timeout=120).returncode == 0
    # Ctrl-C lets the calls on the wire finish and records them: nothing is missing.
    _assert_equal(_recorded(cache), _billed(sim))
    assert sim.stats()["duplicates"] == 0


def test_status_json_reports_the_cache_spend_and_each_step_across_runs(simulator, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [f"question {i}" for i in range(12)])
    cache = tmp_path / "cache"
    for prompt in ("Answer: ", "Reply: "):
        OneStep(source, cache, simulator.openai_base, prompt=prompt).forward(batch_size=5)
    done = subprocess.run(
        [sys.executable, "-m", "datamill.cli", "status", str(cache), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    billed = _billed(simulator)
    spend = data["spend"]
    assert (spend["requests"], spend["prompt_tokens"], spend["completion_tokens"]) == billed
    assert spend["cost_usd"] == pytest.approx(_recorded(cache)[3], rel=1e-9)
    assert spend["last_run"]["requests"] == 12  # the second prompt's run alone
    (step,) = data["steps"]
    assert (step["requests"], step["prompt_tokens"], step["completion_tokens"]) == billed
