"""Offline batch generation through the OpenAI Batch API, against the simulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers.ledger_runs import running_ledger
from offline_helpers import (
    FAST_BATCHES,
    OfflinePipeline,
    assert_rows_match_input,
    cached_responses,
    job_rows,
    read_jsonl,
    run_until_done,
    write_questions,
)

from datamill import OfflineBatchGenerationNotFinished, RowsFailedError
from datamill.serving.pricing import BATCH_DISCOUNT, resolve_price

ROWS = 40


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_questions(tmp_path / "in.jsonl", ROWS)


def test_first_run_submits_and_raises(make_simulator, source: Path, tmp_path: Path) -> None:
    sim = make_simulator(batch_processing_seconds=30)
    pipeline = OfflinePipeline(source, tmp_path / "cache", sim.openai_base)
    with pytest.raises(OfflineBatchGenerationNotFinished) as caught:
        pipeline.forward(batch_size=16)
    error = caught.value
    assert error.exit_code == 75
    assert "rerun the same command" in str(error)
    assert len(error.jobs) == 1
    job = error.jobs[0]
    assert job["job_id"].startswith("batch_") and job["total"] == ROWS and job["provider"] == "openai"
    assert job["base_url"] == sim.openai_base
    stats = sim.stats()
    assert (stats["files_created"], stats["batches_created"], stats["batch_requests"]) == (1, 1, ROWS)
    assert stats["requests"] == 0  # nothing went online
    # The job is recorded with its id; the step committed nothing.
    (record,) = job_rows(pipeline.storage.state_path)
    assert record["job_id"] == job["job_id"] and record["state"] == "submitted"
    assert "sk-" not in str(record)  # the key never reaches the state database


def test_rerun_before_completion_submits_nothing(make_simulator, source: Path, tmp_path: Path) -> None:
    sim = make_simulator(batch_processing_seconds=30)
    cache = tmp_path / "cache"
    with pytest.raises(OfflineBatchGenerationNotFinished) as first:
        OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)
    before = sim.stats()
    for _ in range(3):
        with pytest.raises(OfflineBatchGenerationNotFinished) as again:
            OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)
        assert [j["job_id"] for j in again.value.jobs] == [j["job_id"] for j in first.value.jobs]
    after = sim.stats()
    assert after["files_created"] == before["files_created"] == 1
    assert after["batches_created"] == before["batches_created"] == 1


def test_rerun_after_completion_finishes_in_input_order(make_simulator, source: Path, tmp_path: Path) -> None:
    sim = make_simulator(**FAST_BATCHES)
    cache = tmp_path / "cache"
    summary, runs = run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
    assert runs >= 2 and summary.status == "complete"
    rows = read_jsonl(cache / "off_step1.jsonl")
    assert_rows_match_input(rows, ROWS)  # the simulator shuffles output lines: joined by custom_id
    stats = sim.stats(detail=True)
    assert (stats["files_created"], stats["batches_created"], stats["batch_answered"]) == (1, 1, ROWS)
    assert stats["duplicate_client_keys"] == [] and stats["requests"] == 0
    responses = cached_responses(cache / "off.state.db")
    assert len(responses) == ROWS and all(r["offline"] for r in responses)
    # Cost: the batch discount applies to responses collected from a batch job.
    price = resolve_price("gpt-4o-mini", None)
    assert price is not None
    full = sum(price.cost(r["prompt_tokens"], r["completion_tokens"]) for r in responses)
    step = summary.steps[0]
    assert step.cost_usd == pytest.approx(full * BATCH_DISCOUNT)
    assert step.prompt_tokens == sum(r["prompt_tokens"] for r in responses) == stats["prompt_tokens"]
    # A further run is a no-op.
    again = OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)
    assert again.already_complete
    assert sim.stats()["batches_created"] == 1


def test_failed_lines_are_resubmitted_alone(make_simulator, tmp_path: Path) -> None:
    rows = 400
    source = write_questions(tmp_path / "in.jsonl", rows)
    sim = make_simulator(batch_failed_line_rate=0.05, seed=7, **FAST_BATCHES)
    cache = tmp_path / "cache"
    summary, _ = run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
    assert summary.status == "complete"
    assert_rows_match_input(read_jsonl(cache / "off_step1.jsonl"), rows)
    jobs = job_rows(cache / "off.state.db")
    assert len(jobs) >= 2
    first, second = jobs[0], jobs[1]
    assert first["n_requests"] == rows and 0 < first["failed"] < rows * 0.15
    # The resubmission holds exactly the lines that failed, nothing else.
    assert second["n_requests"] == first["failed"]
    stats = sim.stats(detail=True)
    assert stats["duplicate_client_keys"] == []
    assert stats["batch_answered"] == rows


def test_lines_failing_every_attempt_become_failed_rows(make_simulator, tmp_path: Path) -> None:
    source = write_questions(tmp_path / "in.jsonl", 10)
    sim = make_simulator(batch_failed_line_rate=1.0, **FAST_BATCHES)
    cache = tmp_path / "cache"
    with pytest.raises(RowsFailedError) as caught:
        run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
    assert "Internal server error" in str(caught.value) and "batch_" in str(caught.value)
    jobs = job_rows(cache / "off.state.db")
    assert len(jobs) == 3  # first submission + two resubmissions (MAX_ATTEMPTS = 3), then given up
    assert caught.value.summary.rows_failed == 10


def test_expired_job_keeps_partial_output_and_resubmits_the_rest(make_simulator, tmp_path: Path) -> None:
    rows = 200
    source = write_questions(tmp_path / "in.jsonl", rows)
    sim = make_simulator(
        batch_validating_seconds=0.01,
        batch_processing_seconds=2.0,
        batch_finalizing_seconds=0.01,
        batch_expiry_seconds=0.6,
    )
    cache = tmp_path / "cache"
    with pytest.raises(OfflineBatchGenerationNotFinished):
        OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)
    time.sleep(1.0)  # the job expires part-way
    sim.configure(batch_expiry_seconds=None, batch_processing_seconds=0.1)
    summary, _ = run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
    assert summary.status == "complete"
    assert_rows_match_input(read_jsonl(cache / "off_step1.jsonl"), rows)
    first, second = job_rows(cache / "off.state.db")
    assert first["status"] == "expired" and 0 < first["completed"] < rows
    assert second["n_requests"] == rows - first["completed"]  # only the unanswered rest
    stats = sim.stats(detail=True)
    assert stats["duplicate_client_keys"] == [] and stats["batch_answered"] == rows


def test_job_failing_validation_is_reported_with_the_provider_errors(make_simulator, tmp_path: Path) -> None:
    source = write_questions(tmp_path / "in.jsonl", 20)
    sim = make_simulator(openai_batch_max_lines=5, **FAST_BATCHES)  # our 20-line file is refused
    cache = tmp_path / "cache"
    with pytest.raises(RowsFailedError) as caught:
        run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
    (job,) = job_rows(cache / "off.state.db")
    message = str(caught.value)
    assert f"batch job {job['job_id']} failed validation" in message
    assert "too_many_lines" in message
    assert job["status"] == "failed" and job["state"] == "rejected"
    assert sim.stats()["batches_created"] == 1  # a refused file is not resubmitted in the same run


def test_a_cancelled_job_is_reported_and_resubmitted_only_when_asked(
    make_simulator, source: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from datamill.cli.app import _register_commands, app

    _register_commands()
    sim = make_simulator(
        batch_validating_seconds=0.01, batch_processing_seconds=30, batch_finalizing_seconds=0.01
    )
    cache = tmp_path / "cache"
    with pytest.raises(OfflineBatchGenerationNotFinished) as caught:
        OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)
    job_id = caught.value.jobs[0]["job_id"]
    time.sleep(0.3)
    wide = {"COLUMNS": "250"}
    listed = CliRunner().invoke(app, ["jobs", str(cache)], env=wide)
    assert listed.exit_code == 0, listed.output
    assert job_id in listed.output and "in_progress" in listed.output
    cancelled = CliRunner().invoke(app, ["jobs", str(cache), "--cancel"], env=wide)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancel" in cancelled.output
    sim.configure(batch_processing_seconds=0.1)
    time.sleep(0.2)

    for _ in range(2):  # a plain rerun, and another: the cancelled requests stay held, and say why
        with pytest.raises(RowsFailedError) as held:
            run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
        assert "was cancelled" in str(held.value) and "--resubmit-cancelled" in str(held.value)
        (first,) = job_rows(cache / "off.state.db")
        assert first["status"] == "cancelled"
        assert held.value.summary.rows_failed == ROWS - first["completed"]
    assert sim.stats()["batches_created"] == 1

    asked = CliRunner().invoke(app, ["jobs", str(cache), "--resubmit-cancelled"], env=wide)
    assert asked.exit_code == 0, asked.output
    summary, _ = run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
    assert summary.status == "complete"
    assert_rows_match_input(read_jsonl(cache / "off_step1.jsonl"), ROWS)
    first, second = job_rows(cache / "off.state.db")
    assert second["n_requests"] == ROWS - first["completed"]
    assert sim.stats(detail=True)["duplicate_client_keys"] == []
    listed = CliRunner().invoke(app, ["jobs", str(cache), "--all"], env=wide)
    assert first["job_id"] in listed.output and second["job_id"] in listed.output


def test_offline_step_then_online_step(make_simulator, source: Path, tmp_path: Path) -> None:
    sim = make_simulator(**FAST_BATCHES)
    cache = tmp_path / "cache"
    summary, _ = run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base, online_judge=True))
    assert summary.status == "complete"
    answers = read_jsonl(cache / "off_step1.jsonl")
    assert_rows_match_input(answers, ROWS)
    verdicts = read_jsonl(cache / "off_step2.jsonl")
    assert [r["id"] for r in verdicts] == list(range(ROWS))
    for row in verdicts:
        assert row["verdict"].endswith("Judge: " + row["a"])
    stats = sim.stats(detail=True)
    assert stats["batch_answered"] == ROWS and stats["answered"] == ROWS  # ROWS batch lines, ROWS online
    assert stats["duplicate_client_keys"] == []


def test_blocking_mode_polls_until_done(make_simulator, source: Path, tmp_path: Path) -> None:
    sim = make_simulator(
        batch_validating_seconds=0.01, batch_processing_seconds=0.5, batch_finalizing_seconds=0.01
    )
    cache = tmp_path / "cache"
    summary = OfflinePipeline(source, cache, sim.openai_base, block=0.1).forward(batch_size=16)
    assert summary.status == "complete"
    assert_rows_match_input(read_jsonl(cache / "off_step1.jsonl"), ROWS)
    assert sim.stats()["batches_created"] == 1


def test_switching_a_finished_online_step_to_offline_submits_nothing(
    make_simulator, source: Path, tmp_path: Path
) -> None:
    """``use_offline_batch_generation`` is not part of the step fingerprint: same requests, same cache."""
    sim = make_simulator(**FAST_BATCHES)
    cache = tmp_path / "cache"
    online = OfflinePipeline(source, cache, sim.openai_base)
    online.batch_llm.use_offline_batch_generation = False
    online.forward(batch_size=16)
    assert sim.stats()["answered"] == ROWS
    again = OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)
    assert again.already_complete
    stats = sim.stats()
    assert (stats["files_created"], stats["batches_created"], stats["answered"]) == (0, 0, ROWS)


async def test_the_dispatcher_never_sends_an_offline_request(tmp_path: Path) -> None:
    from datamill import APILLMServing_request
    from datamill.errors import ServingError
    from datamill.serving.dispatch import RequestDispatcher

    serving = APILLMServing_request(api_url="http://127.0.0.1:9/v1", use_offline_batch_generation=True)
    async with running_ledger(tmp_path / "s.state.db") as ledger:
        dispatcher = RequestDispatcher(ledger)
        request = serving.build_request([{"role": "user", "content": "hi"}])
        with pytest.raises(ServingError, match="no Batch API answer for request .*rerun the pipeline"):
            await dispatcher.submit(serving, request)  # fails its row, never stops the run
        dispatcher.offline_failures[request.key] = "openai batch batch_1: server_error: boom"
        with pytest.raises(ServingError, match="boom"):
            await dispatcher.submit(serving, request)
        assert dispatcher.stats.sent == 0
