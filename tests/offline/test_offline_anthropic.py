"""Offline batch generation through Anthropic's Message Batches API, against the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from offline_helpers import FAST_BATCHES, cached_responses, job_rows, read_jsonl, write_questions

from datamill import (
    BatchedFileStorage,
    BatchedPipelineABC,
    OfflineBatchGenerationNotFinished,
    PromptedGenerator,
)
from datamill.core import faults
from datamill.serving.anthropic import AnthropicLLMServing

ROWS = 30


class ClaudePipeline(BatchedPipelineABC):
    def __init__(self, source: Path, cache: Path, base_url: str, block: float | None = None) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(source), cache_path=str(cache), file_name_prefix="claude")
        self.llm = AnthropicLLMServing(
            api_url=base_url,
            model_name="claude-3-5-haiku-latest",
            use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=block,
        )
        self.gen = PromptedGenerator(self.llm, system_prompt="Be brief.", user_prompt="Q: ")

    def forward(self) -> None:
        self.gen.run(self.storage.step(), input_key="q", output_key="a")


def _finish(source: Path, cache: Path, url: str) -> None:
    for _ in range(100):
        try:
            ClaudePipeline(source, cache, url).forward(batch_size=8)
            return
        except OfflineBatchGenerationNotFinished:
            import time

            time.sleep(0.1)
    raise AssertionError("never finished")


def _check_rows(cache: Path) -> None:
    rows = read_jsonl(cache / "claude_step1.jsonl")
    assert [r["id"] for r in rows] == list(range(ROWS))
    for row in rows:
        assert row["a"].endswith(f"Q: question {row['id']}")


def test_anthropic_submit_poll_collect(make_simulator, tmp_path: Path) -> None:
    sim = make_simulator(batch_processing_seconds=30)
    source = write_questions(tmp_path / "in.jsonl", ROWS)
    cache = tmp_path / "cache"
    with pytest.raises(OfflineBatchGenerationNotFinished) as caught:
        ClaudePipeline(source, cache, sim.anthropic_base).forward(batch_size=8)
    (job,) = caught.value.jobs
    assert job["job_id"].startswith("msgbatch_") and job["provider"] == "anthropic" and job["total"] == ROWS
    with pytest.raises(OfflineBatchGenerationNotFinished):
        ClaudePipeline(source, cache, sim.anthropic_base).forward(batch_size=8)
    assert sim.stats()["batches_created"] == 1
    sim.configure(batch_processing_seconds=0.1)
    _finish(source, cache, sim.anthropic_base)
    _check_rows(cache)
    stats = sim.stats(detail=True)
    assert stats["batches_created"] == 1 and stats["batch_answered"] == ROWS
    assert stats["duplicate_client_keys"] == [] and stats["requests"] == 0
    assert all(r["offline"] for r in cached_responses(cache / "claude.state.db"))


def test_anthropic_failed_lines_resubmitted_and_blocking(make_simulator, tmp_path: Path) -> None:
    sim = make_simulator(batch_failed_line_rate=0.1, seed=3, **FAST_BATCHES)
    source = write_questions(tmp_path / "in.jsonl", ROWS)
    cache = tmp_path / "cache"
    summary = ClaudePipeline(source, cache, sim.anthropic_base, block=0.05).forward(batch_size=8)
    assert summary.status == "complete"
    _check_rows(cache)
    jobs = job_rows(cache / "claude.state.db")
    assert len(jobs) >= 2 and jobs[1]["n_requests"] == jobs[0]["failed"]
    assert sim.stats(detail=True)["duplicate_client_keys"] == []


class Crash(Exception):
    pass


def test_anthropic_job_created_but_not_recorded_is_adopted(
    make_simulator, tmp_path: Path, monkeypatch
) -> None:
    """Message Batches have no metadata: the unrecorded batch is found by time and size."""
    sim = make_simulator(**FAST_BATCHES)
    source = write_questions(tmp_path / "in.jsonl", ROWS)
    cache = tmp_path / "cache"

    def crash_if(point: str) -> None:
        if point == "offline_after_create":
            raise Crash(point)

    monkeypatch.setattr(faults, "crash_if", crash_if)
    with pytest.raises(Crash):
        ClaudePipeline(source, cache, sim.anthropic_base).forward(batch_size=8)
    monkeypatch.undo()
    (record,) = job_rows(cache / "claude.state.db")
    assert record["state"] == "creating" and record["job_id"] is None  # the create was sent
    assert sim.stats()["batches_created"] == 1
    _finish(source, cache, sim.anthropic_base)
    _check_rows(cache)
    stats = sim.stats(detail=True)
    assert stats["batches_created"] == 1 and stats["duplicate_client_keys"] == []
    (record,) = job_rows(cache / "claude.state.db")
    assert record["job_id"].startswith("msgbatch_") and record["state"] == "collected"
