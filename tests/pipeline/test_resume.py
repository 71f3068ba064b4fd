"""Resume semantics: continue after the last commit, rerun from a step, and stale fingerprints."""

from __future__ import annotations

import os
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import QAPipeline, questions, read_jsonl, write_jsonl

from datamill import Operator
from datamill.errors import ConfigError

ROWS = 30


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "questions.jsonl", questions(ROWS))


def ids(rows: Any) -> list[int]:
    return [int(row["id"]) for row in rows]


def file_state(path: Path) -> tuple[int, int, bytes]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns, path.read_bytes()


class WordCount(Operator):
    """A plain-Python step, as users write one; ``_explode_at`` simulates a bug at one row."""

    def __init__(self) -> None:
        self._explode_at: int | None = None

    def run(self, storage: Any, input_key: str = "answer", output_key: str = "words") -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key, output_key=output_key)

    def process_batch(self, rows: list[dict], call: dict) -> list[Any]:
        out = []
        for row in rows:
            if self._explode_at is not None and int(row["id"]) == self._explode_at:
                raise ValueError(f"WordCount cannot handle row {row['id']}")
            out.append({**row, call["output_key"]: len(str(row[call["input_key"]]).split())})
        return out


class CountThenJudge(QAPipeline):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = WordCount()

    def forward(self) -> None:
        self.answerer.run(self.storage.step(), input_key="question", output_key="answer")
        self.counter.run(self.storage.step(), input_key="answer", output_key="words")
        self.judge.run(self.storage.step(), input_key="answer", output_key="verdict")


def test_an_exception_in_a_custom_operator_keeps_committed_batches_and_the_rerun_completes(
    simulator, source: Path, tmp_path: Path
) -> None:
    p = CountThenJudge(source, tmp_path / "cache", simulator.openai_base)
    p.counter._explode_at = 17
    with pytest.raises(ValueError, match="row 17"):
        p.forward(batch_size=5)
    assert ids(read_jsonl(p.step_paths()[1])) == list(range(15))  # three batches of five committed
    assert simulator.stats()["requests"] == ROWS  # step 0 finished; step 2 never started

    p.counter._explode_at = None
    summary = p.forward(batch_size=5)
    for path in p.step_paths():
        assert ids(read_jsonl(path)) == list(range(ROWS))
    assert summary.steps[0].requests_sent == 0
    assert summary.steps[1].rows_this_run == ROWS - 15
    stats = simulator.stats()
    assert stats["requests"] == 2 * ROWS and stats["duplicates"] == 0


def test_an_exception_mid_llm_step_then_rerun_sends_each_request_once(
    simulator, source: Path, tmp_path: Path
) -> None:
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, max_workers=2)
    p.answerer._stop_at = 21
    with pytest.raises(RuntimeError, match="row 21"):
        p.forward(batch_size=4)
    kept = ids(read_jsonl(p.step_paths()[0]))
    assert kept == list(range(len(kept))) and len(kept) <= 20 and len(kept) % 4 == 0

    p.answerer._stop_at = None
    p.forward(batch_size=4)
    assert ids(p.rows()) == list(range(ROWS))
    stats = simulator.stats()
    assert stats["duplicates"] == 0 and stats["answered"] == 2 * ROWS


def test_ctrl_c_mid_run_stops_cleanly_and_the_rerun_pays_nothing_twice(
    simulator, source: Path, tmp_path: Path
) -> None:
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, max_workers=2)
    original = p.judge.apply_responses

    def press_ctrl_c_at_row_9(row: dict, responses: list, call: dict) -> Any:
        if int(row["id"]) == 9:
            os.kill(os.getpid(), signal.SIGINT)
        return original(row, responses, call)

    p.judge.apply_responses = press_ctrl_c_at_row_9
    with pytest.raises(KeyboardInterrupt):
        p.forward(batch_size=3)
    assert ids(read_jsonl(p.step_paths()[0])) == list(range(ROWS))
    kept = ids(read_jsonl(p.step_paths()[1]))
    assert kept == list(range(len(kept))) and len(kept) < ROWS

    with closing(sqlite3.connect(p.storage.state_path)) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]

    p.judge.apply_responses = original
    summary = p.forward(batch_size=3)
    assert summary.status == "complete"
    assert ids(p.rows()) == list(range(ROWS))
    stats = simulator.stats()
    assert stats["duplicates"] == 0 and stats["answered"] == 2 * ROWS


def test_a_different_batch_size_on_resume_gives_one_row_per_input_row(
    simulator, source: Path, tmp_path: Path
) -> None:
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, max_workers=1)
    p.answerer._stop_at = 23
    with pytest.raises(RuntimeError):
        p.forward(batch_size=7)
    kept = ids(read_jsonl(p.step_paths()[0]))
    assert kept == list(range(len(kept))) and len(kept) % 7 == 0

    p.answerer._stop_at = None
    p.forward(batch_size=3)
    for path in p.step_paths():
        assert ids(read_jsonl(path)) == list(range(ROWS))
    assert simulator.stats()["duplicates"] == 0


def test_rerunning_a_finished_pipeline_sends_nothing_and_still_reads_every_row(
    simulator, source: Path, tmp_path: Path
) -> None:
    QAPipeline(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    before = simulator.stats()

    again = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    summary = again.forward(batch_size=8, resume_from_last=True)
    assert summary.already_complete and summary.status == "complete"
    assert summary.requests_sent == 0
    assert [(s.rows_in, s.rows_out) for s in summary.steps] == [(ROWS, ROWS), (ROWS, ROWS)]
    assert simulator.stats() == before
    assert ids(again.rows()) == list(range(ROWS))


def test_resume_step_reruns_from_that_operator_and_keeps_earlier_files(
    simulator, source: Path, tmp_path: Path
) -> None:
    QAPipeline(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    step1_before = file_state(p.step_paths()[0])
    step2_rows = read_jsonl(p.step_paths()[1])
    sent_before = simulator.stats()["requests"]

    summary = p.forward(resume_step=1)

    assert file_state(p.step_paths()[0]) == step1_before
    assert read_jsonl(p.step_paths()[1]) == step2_rows
    assert summary.steps[0].rows_this_run == 0
    assert summary.steps[1].rows_this_run == ROWS
    assert summary.steps[1].cache_hits == ROWS and summary.steps[1].requests_sent == 0
    assert any("resume_step=1" in reason for reason in summary.steps[1].changes)
    stats = simulator.stats()
    assert stats["requests"] == sent_before and stats["duplicates"] == 0


def test_resume_step_zero_reruns_everything_from_the_request_cache(
    simulator, source: Path, tmp_path: Path
) -> None:
    QAPipeline(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    sent_before = simulator.stats()["requests"]
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    summary = p.forward(batch_size=8, resume_step=0)
    assert [s.rows_this_run for s in summary.steps] == [ROWS, ROWS]
    assert simulator.stats()["requests"] == sent_before
    assert ids(p.rows()) == list(range(ROWS))


def test_resume_step_and_resume_from_last_together_is_a_config_error(
    simulator, source: Path, tmp_path: Path
) -> None:
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(ConfigError, match="not both"):
        p.forward(resume_from_last=True, resume_step=1)
    with pytest.raises(ConfigError, match="out of range"):
        p.forward(resume_step=2)
    assert simulator.stats()["requests"] == 0


def test_resume_from_last_false_starts_over_from_the_cache(simulator, source: Path, tmp_path: Path) -> None:
    QAPipeline(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    sent_before = simulator.stats()["requests"]
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    summary = p.forward(batch_size=8, resume_from_last=False)
    assert not summary.already_complete
    assert [s.rows_this_run for s in summary.steps] == [ROWS, ROWS]
    assert ids(p.rows()) == list(range(ROWS))
    assert simulator.stats()["requests"] == sent_before


# --- step fingerprints ----------------------------------------------------------------------


def run_changed(simulator, source: Path, tmp_path: Path, **changes: Any):
    """Run the default pipeline, then the changed one; return (summary, new requests, step-1 file kept)."""
    first = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    first.forward(batch_size=8)
    step1_before = file_state(first.step_paths()[0])
    sent_before = simulator.stats()["requests"]
    changed = QAPipeline(source, tmp_path / "cache", simulator.openai_base, **changes)
    summary = changed.forward(batch_size=8)
    stats = simulator.stats()
    assert stats["duplicates"] == 0
    assert ids(changed.rows()) == list(range(ROWS))
    return summary, stats["requests"] - sent_before, file_state(first.step_paths()[0]) == step1_before


def test_a_changed_prompt_of_the_last_step_recomputes_only_that_step(
    simulator, source: Path, tmp_path: Path
) -> None:
    summary, sent, step1_kept = run_changed(simulator, source, tmp_path, judge_prompt="Grade strictly: ")
    assert step1_kept
    assert summary.steps[0].changes == [] and summary.steps[0].rows_this_run == 0
    assert summary.steps[1].changes == ["configuration changed: config.user_prompt changed"]
    assert sent == ROWS


def test_a_changed_first_prompt_recomputes_that_step_and_all_after(
    simulator, source: Path, tmp_path: Path
) -> None:
    summary, sent, step1_kept = run_changed(simulator, source, tmp_path, answer_prompt="Answer at length: ")
    assert not step1_kept
    assert summary.steps[0].changes == ["configuration changed: config.user_prompt changed"]
    assert [s.rows_this_run for s in summary.steps] == [ROWS, ROWS]
    assert sent == 2 * ROWS


@pytest.mark.parametrize(
    ("change", "described"),
    [
        ({"model_name": "gpt-4o"}, "config.llm_serving.model changed"),
        ({"temperature": 0.3}, "config.llm_serving.params.temperature added"),
    ],
)
def test_a_changed_model_or_param_marks_every_step_stale(
    simulator, source: Path, tmp_path: Path, change: dict, described: str
) -> None:
    summary, sent, _ = run_changed(simulator, source, tmp_path, **change)
    assert summary.steps[0].changes == [f"configuration changed: {described}"]
    assert [s.rows_this_run for s in summary.steps] == [ROWS, ROWS]
    assert sent == 2 * ROWS


def test_a_renamed_key_recomputes_but_every_request_comes_from_the_cache(
    simulator, source: Path, tmp_path: Path
) -> None:
    summary, sent, _ = run_changed(simulator, source, tmp_path, answer_key="reply")
    assert summary.steps[0].changes == ["configuration changed: call.output_key changed"]
    assert [s.rows_this_run for s in summary.steps] == [ROWS, ROWS]
    assert [s.cache_hits for s in summary.steps] == [ROWS, ROWS]
    assert sent == 0


def test_a_changed_input_file_recomputes_and_sends_only_the_new_rows(
    simulator, source: Path, tmp_path: Path
) -> None:
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    p.forward(batch_size=8)
    sent_before = simulator.stats()["requests"]
    write_jsonl(source, questions(ROWS + 2))

    again = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    summary = again.forward(batch_size=8)
    assert summary.steps[0].changes == [
        "configuration changed: upstream.input_file.sha256 changed, upstream.input_file.size changed"
    ]
    assert ids(again.rows()) == list(range(ROWS + 2))
    stats = simulator.stats()
    assert stats["requests"] - sent_before == 2 * 2 and stats["duplicates"] == 0


@pytest.mark.parametrize("change", [{"max_workers": 2}, {"retry_attempts": 5}, {"batch_size": 3}])
def test_speed_settings_do_not_make_a_step_stale(
    simulator, source: Path, tmp_path: Path, change: dict
) -> None:
    from datamill.serving.retry import RetryPolicy

    QAPipeline(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    before = simulator.stats()
    kwargs: dict[str, Any] = {}
    if "max_workers" in change:
        kwargs["max_workers"] = change["max_workers"]
    if "retry_attempts" in change:
        kwargs["retry"] = RetryPolicy(max_attempts=change["retry_attempts"])
    again = QAPipeline(source, tmp_path / "cache", simulator.openai_base, **kwargs)
    summary = again.forward(batch_size=change.get("batch_size", 8))
    assert summary.already_complete
    assert all(step.changes == [] for step in summary.steps)
    assert simulator.stats() == before


# --- the files themselves ----------------------------------------------------------------


@pytest.mark.parametrize("cache_type", ["jsonl", "parquet"])
def test_a_deleted_step_file_is_rebuilt_from_the_request_cache(
    simulator, source: Path, tmp_path: Path, cache_type: str
) -> None:
    import shutil

    QAPipeline(source, tmp_path / "cache", simulator.openai_base, cache_type=cache_type).forward(batch_size=8)
    sent_before = simulator.stats()["requests"]
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, cache_type=cache_type)
    first = p.step_paths()[0]
    shutil.rmtree(first) if first.is_dir() else first.unlink()

    summary = p.forward(batch_size=8)
    assert any("missing or shorter" in reason for reason in summary.steps[0].changes)
    assert [s.rows_this_run for s in summary.steps] == [ROWS, ROWS]
    assert ids(p.rows(step=0)) == list(range(ROWS)) and ids(p.rows()) == list(range(ROWS))
    assert simulator.stats()["requests"] == sent_before


def test_a_truncated_step_file_is_detected_and_rebuilt(simulator, source: Path, tmp_path: Path) -> None:
    QAPipeline(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    last = p.step_paths()[1]
    last.write_bytes(last.read_bytes()[:100])
    summary = p.forward(batch_size=8)
    assert summary.steps[0].changes == [] and summary.steps[1].changes
    assert ids(p.rows()) == list(range(ROWS))
    assert simulator.stats()["duplicates"] == 0


def test_a_step_added_at_the_end_runs_alone(simulator, source: Path, tmp_path: Path) -> None:
    class AnswerOnly(QAPipeline):
        def forward(self) -> None:
            self.answerer.run(self.storage.step(), input_key="question", output_key="answer")

    AnswerOnly(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    step1_before = file_state(p.step_paths()[0])
    summary = p.forward(batch_size=8)
    assert file_state(p.step_paths()[0]) == step1_before
    assert [s.rows_this_run for s in summary.steps] == [0, ROWS]
    assert simulator.stats()["requests"] == 2 * ROWS


def test_a_step_removed_from_the_end_leaves_the_rest_complete(
    simulator, source: Path, tmp_path: Path
) -> None:
    class AnswerOnly(QAPipeline):
        def forward(self) -> None:
            self.answerer.run(self.storage.step(), input_key="question", output_key="answer")

    QAPipeline(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    sent = simulator.stats()["requests"]
    summary = AnswerOnly(source, tmp_path / "cache", simulator.openai_base).forward(batch_size=8)
    assert summary.already_complete
    assert simulator.stats()["requests"] == sent
