"""Failures are never silent: failed rows are recorded, reported, raised, and retried on resume."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from engine_helpers import (
    FAST_RETRY,
    AnswerPipeline,
    QAPipeline,
    failures_table,
    questions,
    read_jsonl,
    write_jsonl,
)

from datamill.errors import RowsFailedError, ServingError
from datamill.serving.retry import RetryPolicy


def ids(rows) -> list[int]:
    return [int(row["id"]) for row in rows]


def test_a_provider_failing_every_call_fails_every_row_and_raises_at_the_end(
    simulator, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(10))
    simulator.configure(failure_rate=1.0)
    p = AnswerPipeline(source, tmp_path / "cache", simulator.openai_base, retry=FAST_RETRY)
    with pytest.raises(RowsFailedError) as caught:
        p.forward(batch_size=4)

    summary = caught.value.summary
    assert summary.status == "failed_rows" and summary.rows_failed == 10
    assert (summary.steps[0].rows_in, summary.steps[0].rows_out) == (10, 0)
    assert "10 row(s) failed" in str(caught.value) and "HTTP 500" in str(caught.value)
    assert read_jsonl(p.step_paths()[0]) == []  # no row written as null or half-done
    table = failures_table(p)
    assert [row for _, row, _ in table] == list(range(10))
    assert all("gave up after 3 attempts" in error and "HTTP 500" in error for _, _, error in table)
    assert simulator.stats()["requests"] == 10 * FAST_RETRY.max_attempts


def test_failed_rows_are_committed_around_and_only_they_are_retried_after_the_fix(
    simulator, tmp_path: Path
) -> None:
    rows = 60
    source = write_jsonl(tmp_path / "in.jsonl", questions(rows))
    simulator.configure(failure_rate=0.3, seed=7)
    p = AnswerPipeline(source, tmp_path / "cache", simulator.openai_base)  # no retries: one call per row
    with pytest.raises(RowsFailedError) as caught:
        p.forward(batch_size=8)
    failed = [row for _, row, _ in failures_table(p)]
    assert 0 < len(failed) < rows
    assert caught.value.summary.rows_failed == len(failed)
    written = ids(read_jsonl(p.step_paths()[0]))
    assert written == [i for i in range(rows) if i not in failed]  # everything else, in order
    assert simulator.stats()["requests"] == rows

    simulator.configure(failure_rate=0.0)
    summary = p.forward(batch_size=8, resume_from_last=True)
    assert summary.status == "complete" and summary.rows_failed == 0
    assert ids(p.rows()) == list(range(rows))
    assert failures_table(p) == []
    stats = simulator.stats()
    assert stats["requests"] == rows + len(failed)
    assert stats["duplicates"] == 0


def test_failures_in_the_first_step_do_not_reach_the_next(simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(30))
    simulator.configure(failure_rate=0.25, seed=3)
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RowsFailedError) as caught:
        p.forward(batch_size=5)
    summary = caught.value.summary
    failed_first = summary.steps[0].rows_failed
    assert failed_first > 0
    assert summary.steps[1].rows_in == 30 - failed_first  # step 1 reads only what step 0 wrote
    assert summary.rows_failed == len(failures_table(p))

    simulator.configure(failure_rate=0.0)
    p.forward(batch_size=5)
    for path in p.step_paths():
        assert ids(read_jsonl(path)) == list(range(30))
    assert simulator.stats()["duplicates"] == 0


def test_a_row_missing_its_input_key_fails_with_the_reason_and_sends_nothing(
    simulator, tmp_path: Path
) -> None:
    rows = questions(10)
    del rows[3]["question"]
    rows[7]["question"] = None
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(RowsFailedError) as caught:
        p.forward(batch_size=4)
    assert caught.value.summary.rows_failed == 2
    assert failures_table(p) == [
        (0, 3, "row has no value for input key 'question'"),
        (0, 7, "row has no value for input key 'question'"),
    ]
    assert ids(p.rows()) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert simulator.stats()["requests"] == 2 * 8


def test_a_failed_row_is_reported_by_step_input_file_and_1_based_row(simulator, tmp_path: Path) -> None:
    rows = questions(10)
    del rows[3]["question"]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(RowsFailedError) as caught:
        p.forward(batch_size=4)
    step_name = caught.value.summary.steps[0].name
    expected = f"step 0 ({step_name}), input row 4 of {source}: row has no value for input key 'question'"
    assert expected in str(caught.value)


def test_allowed_failure_fraction_lets_the_run_finish_and_still_reports_the_count(
    simulator, tmp_path: Path
) -> None:
    class Tolerant(AnswerPipeline):
        allowed_failure_fraction = 0.2

    rows = questions(10)
    del rows[5]["question"]
    del rows[6]["question"]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    p = Tolerant(source, tmp_path / "cache", simulator.openai_base)
    summary = p.forward(batch_size=3)
    assert summary.status == "failed_rows"
    assert summary.rows_failed == 2 and summary.steps[0].rows_out == 8
    assert [row for row, _ in summary.steps[0].failure_samples] == [5, 6]

    del rows[7]["question"]
    write_jsonl(source, rows)
    with pytest.raises(RowsFailedError, match="3 row"):
        Tolerant(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=3)


def test_a_wrong_api_key_is_not_retried_and_stops_the_run_fast(make_simulator, tmp_path: Path) -> None:
    sim = make_simulator(require_api_key="sk-right")
    source = write_jsonl(tmp_path / "in.jsonl", questions(6))
    slow_retries = RetryPolicy(max_attempts=5, base_delay=5.0, max_delay=5.0)
    p = AnswerPipeline(source, tmp_path / "cache", sim.openai_base, retry=slow_retries, api_key="sk-wrong")
    started = time.monotonic()
    with pytest.raises(ServingError) as caught:
        p.forward(batch_size=2)
    assert time.monotonic() - started < 4.0  # no backoff: a 401 is never retried
    assert caught.value.status == 401 and "HTTP 401" in str(caught.value)
    assert "sk-wrong" not in str(caught.value)
    stats = sim.stats()
    assert 1 <= stats["requests"] <= 6 and stats["requests"] == stats["unauthorized"]

    fixed = AnswerPipeline(
        source, tmp_path / "cache", sim.openai_base, retry=slow_retries, api_key="sk-right"
    )
    summary = fixed.forward(batch_size=2)
    assert summary.status == "complete"
    assert ids(fixed.rows()) == list(range(6))
    stats = sim.stats()
    assert stats["answered"] == 6 and stats["duplicates"] == 0
    for path in (tmp_path / "cache").iterdir():  # state db, its WAL, step files, lock
        assert b"sk-right" not in path.read_bytes(), path


def test_transient_errors_are_retried_and_the_run_completes(simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(40))
    simulator.configure(failure_rate=0.2, malformed_rate=0.1, seed=11)
    p = AnswerPipeline(
        source, tmp_path / "cache", simulator.openai_base, retry=RetryPolicy(max_attempts=8, base_delay=0.001)
    )
    summary = p.forward(batch_size=7)
    assert summary.status == "complete"
    assert summary.steps[0].retries > 0
    assert ids(p.rows()) == list(range(40))
    stats = simulator.stats()
    assert stats["answered"] == 40 and stats["duplicates"] == 0


FAILING_CACHE_WRITE = """
import os
from datamill import BatchedPipelineABC, BatchedFileStorage, APILLMServing_request, PromptedGenerator

class P(BatchedPipelineABC):
    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(os.environ["IN"], cache_path=os.environ["CACHE"], file_name_prefix="f")
        self.llm = APILLMServing_request(api_url=os.environ["URL"], model_name="m", max_workers=8)
        self.op = PromptedGenerator(llm_serving=self.llm, system_prompt="Echo:")
    def forward(self):
        self.op.run(self.storage.step(), input_key="raw_content", output_key="out")

P().forward(batch_size=4)
"""


def test_a_request_cache_write_that_fails_stops_the_run_with_its_error(simulator, tmp_path: Path) -> None:
    """Cache writes run on a thread of their own, reported through loop callbacks where asyncio
    only logs errors; the run must still stop with the error rather than carry on without
    caching responses. What it had answered stays in the response journal: a rerun pays
    nothing for it."""
    import os
    import subprocess
    import sys

    script = tmp_path / "pipeline.py"
    script.write_text(FAILING_CACHE_WRITE)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"raw_content": "row {i}"}}\n' for i in range(200)))
    env = {
        **os.environ,
        "IN": str(source),
        "CACHE": str(tmp_path / "cache"),
        "URL": simulator.openai_base + "/chat/completions",
        "DATAMILL_FAULT": "raise_in_cache_put:1",
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "injected failure at raise_in_cache_put" in done.stderr
    answered = simulator.stats()["answered"]
    assert answered > 0

    del env["DATAMILL_FAULT"]
    again = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    stats = simulator.stats()
    assert stats["duplicates"] == 0 and stats["answered"] == 200


@pytest.mark.parametrize("fault", ["raise_in_cache_put:2", "raise_in_journal_append:3"])
def test_a_write_failure_stops_sending_at_once_and_names_the_file(
    make_simulator, tmp_path: Path, fault
) -> None:
    """A full disk (injected): the run stops sending the moment a write fails, says which file
    and what to do, and a rerun pays again for at most the calls that were on the wire."""
    import os
    import subprocess
    import sys

    sim = make_simulator(latency_mean=0.03, latency_jitter=0.01)
    script = tmp_path / "pipeline.py"
    script.write_text(FAILING_CACHE_WRITE)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"raw_content": "row {i}"}}\n' for i in range(2000)))
    env = {
        **os.environ,
        "IN": str(source),
        "CACHE": str(tmp_path / "cache"),
        "URL": sim.openai_base + "/chat/completions",
        "DATAMILL_FAULT": fault,
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "f.state.db" in done.stderr and "Free disk space" in done.stderr, done.stderr
    answered = sim.stats()["answered"]
    assert answered < 200, answered  # stopped at once, not after the 2,000 rows

    del env["DATAMILL_FAULT"]
    again = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    stats = sim.stats()
    assert stats["answered"] == 2000 + stats["duplicates"]
    assert stats["duplicates"] <= 8  # max_workers: the calls on the wire when the write failed
