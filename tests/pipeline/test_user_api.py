"""The user-facing API: compile, forward, reading results, and each cache type end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import AnswerPipeline, QAPipeline, questions, write_jsonl

from datamill import BatchedFileStorage, BatchedPipelineABC, PromptedGenerator, RunSummary
from datamill.errors import ConfigError

ROWS = 23


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "questions.jsonl", questions(ROWS))


def assert_complete_qa_rows(rows: list[dict], count: int = ROWS) -> None:
    assert [int(row["id"]) for row in rows] == list(range(count))
    for row in rows:
        assert f"question number {row['id']}" in row["answer"]
        assert row["answer"] in row["verdict"]


def test_compile_then_forward_writes_every_row_once_in_order(
    simulator, input_file: Path, tmp_path: Path
) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base + "/chat/completions")
    assert p.compile() is p
    summary = p.forward(batch_size=5, resume_from_last=True)

    assert isinstance(summary, RunSummary)
    assert summary.status == "complete" and not summary.already_complete
    assert [(s.rows_in, s.rows_out, s.rows_failed) for s in summary.steps] == [
        (ROWS, ROWS, 0),
        (ROWS, ROWS, 0),
    ]
    assert [s.requests_sent for s in summary.steps] == [ROWS, ROWS]
    assert_complete_qa_rows(list(p.rows()))
    assert [int(r["id"]) for r in p.rows(step=0)] == list(range(ROWS))
    assert "verdict" not in next(p.rows(step=0))
    stats = simulator.stats()
    assert stats["requests"] == 2 * ROWS and stats["duplicates"] == 0


def test_step_paths_are_named_by_prefix_and_step_number(simulator, input_file: Path, tmp_path: Path) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    p.forward(batch_size=8)
    assert p.step_paths() == [tmp_path / "cache" / "qa_step1.jsonl", tmp_path / "cache" / "qa_step2.jsonl"]
    assert all(path.is_file() for path in p.step_paths())
    assert (tmp_path / "cache" / "qa.state.db").is_file()


def test_to_pandas_gives_the_last_step_as_a_dataframe(simulator, input_file: Path, tmp_path: Path) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    p.forward(batch_size=8)
    frame = p.to_pandas()
    assert list(frame.columns) == ["id", "question", "answer", "verdict"]
    assert len(frame) == ROWS
    assert list(p.to_pandas(step=0).columns) == ["id", "question", "answer"]


def test_forward_compiles_by_itself_when_compile_was_not_called(
    simulator, input_file: Path, tmp_path: Path
) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    summary = p.forward(batch_size=4)
    assert summary.status == "complete"
    assert_complete_qa_rows(list(p.rows()))


def test_the_subclass_forward_stays_the_trace_source(simulator, input_file: Path, tmp_path: Path) -> None:
    traced = []

    class Traced(QAPipeline):
        def forward(self) -> None:
            traced.append("traced")
            self.answerer.run(self.storage.step(), input_key="question", output_key="answer")

    p = Traced(input_file, tmp_path / "cache", simulator.openai_base)
    p.compile()
    assert traced == ["traced"]
    summary = p.forward(batch_size=6)
    assert traced == ["traced"]  # forward(batch_size=...) ran the engine, not the wiring again
    assert len(summary.steps) == 1
    assert [set(r) for r in p.rows()] == [{"id", "question", "answer"}] * ROWS


def test_compile_sends_no_request(simulator, input_file: Path, tmp_path: Path) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    p.compile()
    assert simulator.stats()["requests"] == 0
    assert not (tmp_path / "cache" / "qa_step1.jsonl").exists()


@pytest.mark.parametrize("cache_type", ["jsonl", "csv", "parquet"])
def test_each_cache_type_runs_end_to_end_and_resumes(
    simulator, input_file: Path, tmp_path: Path, cache_type: str
) -> None:
    cache = tmp_path / "cache"
    first = QAPipeline(input_file, cache, simulator.openai_base, cache_type=cache_type)
    first.forward(batch_size=4)
    paths = first.step_paths()
    assert [path.name for path in paths] == [f"qa_step1.{cache_type}", f"qa_step2.{cache_type}"]
    if cache_type == "parquet":
        assert all(path.is_dir() and any(path.glob("rows-*.parquet")) for path in paths)
    rows = list(first.rows())
    assert_complete_qa_rows(rows)
    sent = simulator.stats()["requests"]

    # A new process would build the pipeline again: same cache, nothing left to do.
    again = QAPipeline(input_file, cache, simulator.openai_base, cache_type=cache_type)
    summary = again.forward(batch_size=4, resume_from_last=True)
    assert summary.already_complete
    assert list(again.rows()) == rows
    assert simulator.stats()["requests"] == sent


@pytest.mark.parametrize("cache_type", ["jsonl", "csv", "parquet"])
def test_each_cache_type_resumes_a_run_stopped_mid_step(
    simulator, input_file: Path, tmp_path: Path, cache_type: str
) -> None:
    p = QAPipeline(
        input_file, tmp_path / "cache", simulator.openai_base, cache_type=cache_type, max_workers=1
    )
    p.judge._stop_at = 11
    with pytest.raises(RuntimeError, match="stopped by the test"):
        p.forward(batch_size=3)
    assert 0 < len(list(p.rows())) <= 11
    p.judge._stop_at = None
    p.forward(batch_size=3)
    assert_complete_qa_rows(list(p.rows()))
    stats = simulator.stats()
    assert stats["duplicates"] == 0 and stats["answered"] == 2 * ROWS


def test_cache_type_must_be_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cache_type"):
        BatchedFileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path), cache_type="xlsx")


def test_a_pipeline_without_storage_or_operators_is_a_config_error(
    simulator, input_file: Path, tmp_path: Path
) -> None:
    class NoStorage(BatchedPipelineABC):
        def forward(self) -> None:
            pass

    with pytest.raises(ConfigError, match="BatchedFileStorage"):
        NoStorage().compile()

    class NoSteps(BatchedPipelineABC):
        def __init__(self) -> None:
            super().__init__()
            self.storage = BatchedFileStorage(str(input_file), cache_path=str(tmp_path / "cache"))

        def forward(self) -> None:
            pass

    with pytest.raises(ConfigError, match="no operator"):
        NoSteps().forward()


def test_operators_cannot_run_outside_the_pipeline(simulator, input_file: Path, tmp_path: Path) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(ConfigError, match="compile"):
        p.answerer.run(p.storage.step(), input_key="question", output_key="answer")
    assert isinstance(p.answerer, PromptedGenerator)


def test_batch_size_must_be_positive(simulator, input_file: Path, tmp_path: Path) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(ConfigError, match="batch_size"):
        p.forward(batch_size=0)


def test_a_pipeline_whose_init_skips_super_init_still_runs(
    simulator, input_file: Path, tmp_path: Path
) -> None:
    class Forgetful(BatchedPipelineABC):
        def __init__(self) -> None:  # no super().__init__(): a common slip
            self.storage = BatchedFileStorage(str(input_file), cache_path=str(tmp_path / "cache"))
            self.gen = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base).answerer

        def forward(self) -> None:
            self.gen.run(self.storage.step(), input_key="question", output_key="answer")

    p = Forgetful()
    assert [path.name for path in p.step_paths()] == ["datamill_cache_step1.jsonl"]
    assert p.forward(batch_size=10).steps[0].rows_out == ROWS
    assert p.last_summary is not None


KILLED_PIPELINE = """
import os, sys
from pathlib import Path
sys.path.insert(0, os.environ["HELPERS"])
from engine_helpers import AnswerPipeline
p = AnswerPipeline(Path(os.environ["IN"]), Path(os.environ["CACHE"]), os.environ["URL"],
                   cache_type=os.environ["CACHE_TYPE"], max_workers=2)
p.forward(batch_size=int(os.environ["BATCH"]))
"""


@pytest.mark.parametrize("cache_type", ["jsonl", "csv", "parquet"])
def test_rows_to_pandas_and_step_paths_show_only_committed_rows_after_a_kill(
    make_simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_type: str
) -> None:
    """A process killed after appending a batch but before committing it leaves that batch in
    the step file; readers see the committed rows only, as ``datamill export`` does."""
    import sqlite3

    from helpers.subprocess_runs import run_pipeline_script

    from datamill.core.rowfiles import iter_rows

    simulator = make_simulator(latency_mean=0.005)  # a few batches per group commit
    source = write_jsonl(tmp_path / "in.jsonl", questions(100))
    script = tmp_path / "killed.py"
    script.write_text(KILLED_PIPELINE)
    monkeypatch.setenv("HELPERS", str(Path(__file__).parent))
    monkeypatch.setenv("CACHE_TYPE", cache_type)
    cache = tmp_path / "cache"
    code = run_pipeline_script(script, source, cache, simulator.openai_base, 4, fault="after_append:3")
    assert code != 0
    with sqlite3.connect(cache / "ans.state.db") as conn:
        committed = conn.execute("SELECT COALESCE(SUM(out_rows), 0) FROM commits").fetchone()[0]
    p = AnswerPipeline(source, cache, simulator.openai_base, cache_type=cache_type)
    on_disk = list(iter_rows(p.storage.step_path(0), cache_type))
    assert 0 < committed < len(on_disk)  # the killed run appended a batch it never committed

    rows = list(p.rows())
    assert [int(row["id"]) for row in rows] == list(range(committed))
    assert len(p.to_pandas()) == committed
    (path,) = p.step_paths()
    assert [int(row["id"]) for row in iter_rows(path, cache_type)] == list(range(committed))


def test_a_parquet_step_run_in_tiny_batches_is_a_few_files_not_one_per_batch(
    simulator, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(400))
    p = AnswerPipeline(source, tmp_path / "cache", simulator.openai_base, cache_type="parquet")
    p.forward(batch_size=4)
    (path,) = p.step_paths()
    assert len(list(path.iterdir())) == 1  # not 100
    assert [int(row["id"]) for row in p.rows()] == list(range(400))
