"""Steps that expand, drop or fail rows, and inputs in every format, resume to the same rows."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import QAPipeline, StoppableGenerator, questions, read_jsonl, write_jsonl

from datamill import BatchedFileStorage, BatchedPipelineABC, Operator
from datamill.errors import InputFileError, RowsFailedError
from datamill.operators.base import Dropped
from datamill.serving.retry import RetryPolicy


class SplitSentences(Operator):
    """Expands each row into one row per part; drops rows whose id is a multiple of 5."""

    def run(self, storage: Any, input_key: str = "answer", output_key: str = "part") -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key, output_key=output_key)

    def process_batch(self, rows: list[dict], call: dict) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            if int(row["id"]) % 5 == 0:
                out.append(Dropped("id is a multiple of 5"))
            else:
                out.append([{**row, call["output_key"]: k} for k in range(2)])
        return out


class AnswerSplitJudge(QAPipeline):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.splitter = SplitSentences()

    def forward(self) -> None:
        self.answerer.run(self.storage.step(), input_key="question", output_key="answer")
        self.splitter.run(self.storage.step(), input_key="answer", output_key="part")
        self.judge.run(self.storage.step(), input_key="answer", output_key="verdict")


def expected_parts(count: int) -> list[tuple[int, int]]:
    return [(i, k) for i in range(count) if i % 5 for k in range(2)]


def test_expanded_and_dropped_rows_survive_failures_and_resume(simulator, tmp_path: Path) -> None:
    rows = 40
    source = write_jsonl(tmp_path / "in.jsonl", questions(rows))
    simulator.configure(failure_rate=0.2, seed=5)
    p = AnswerSplitJudge(source, tmp_path / "cache", simulator.openai_base, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RowsFailedError):
        p.forward(batch_size=6)

    simulator.configure(failure_rate=0.0)
    summary = p.forward(batch_size=4)
    assert summary.status == "complete"
    step1, step2, step3 = (read_jsonl(path) for path in p.step_paths())
    assert [r["id"] for r in step1] == list(range(rows))
    assert [(r["id"], r["part"]) for r in step2] == expected_parts(rows)
    assert [(r["id"], r["part"]) for r in step3] == expected_parts(rows)
    assert summary.steps[1].rows_dropped == rows // 5
    assert simulator.stats()["duplicates"] == 0


def test_an_expanding_step_resumes_after_an_interrupted_downstream_step(simulator, tmp_path: Path) -> None:
    rows = 20
    source = write_jsonl(tmp_path / "in.jsonl", questions(rows))
    p = AnswerSplitJudge(source, tmp_path / "cache", simulator.openai_base, max_workers=1)
    p.judge._stop_at = 13
    with pytest.raises(RuntimeError):
        p.forward(batch_size=5)
    p.judge._stop_at = None
    p.forward(batch_size=3)
    assert [(r["id"], r["part"]) for r in p.rows()] == expected_parts(rows)
    stats = simulator.stats()
    assert stats["duplicates"] == 0
    assert stats["answered"] == rows + len(expected_parts(rows)) // 2  # identical judge requests sent once


def test_a_csv_input_resumes_mid_step(simulator, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question"])
        for row in questions(25):
            writer.writerow([row["id"], row["question"] + ",\nwith a second line"])
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, max_workers=1)
    p.answerer._stop_at = 14
    with pytest.raises(RuntimeError):
        p.forward(batch_size=4)
    p.answerer._stop_at = None
    p.forward(batch_size=6)
    rows = list(p.rows())
    assert [r["id"] for r in rows] == [str(i) for i in range(25)]
    assert all(r["question"].endswith(",\nwith a second line") for r in rows)
    assert simulator.stats()["duplicates"] == 0


def test_a_parquet_input_file_runs_and_resumes(simulator, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(questions(25)), source, row_group_size=7)
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, max_workers=1, cache_type="parquet")
    p.answerer._stop_at = 17
    with pytest.raises(RuntimeError):
        p.forward(batch_size=4)
    p.answerer._stop_at = None
    p.forward(batch_size=5)
    assert [r["id"] for r in p.rows()] == list(range(25))
    assert simulator.stats()["duplicates"] == 0


def test_reading_a_step_before_it_ran_says_to_run_forward(simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(InputFileError, match=r"forward\(\)"):
        list(p.rows())


def test_each_run_is_recorded_with_its_outcome(simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(8))
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    p.judge._stop_at = 4
    with pytest.raises(RuntimeError):
        p.forward(batch_size=2)
    p.judge._stop_at = None
    p.forward(batch_size=2)
    p.forward(batch_size=2)
    conn = sqlite3.connect(p.storage.state_path)
    try:
        statuses = [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY id")]
    finally:
        conn.close()
    assert statuses == ["error", "complete", "complete"]


def test_two_pipelines_with_different_prefixes_share_a_cache_directory(simulator, tmp_path: Path) -> None:
    class Named(BatchedPipelineABC):
        def __init__(self, prefix: str, prompt: str) -> None:
            super().__init__()
            base = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
            self.storage = BatchedFileStorage(
                str(source), cache_path=str(tmp_path / "cache"), file_name_prefix=prefix
            )
            self.gen = StoppableGenerator(base.llm, user_prompt=prompt)

        def forward(self) -> None:
            self.gen.run(self.storage.step(), input_key="question", output_key="out")

    source = write_jsonl(tmp_path / "in.jsonl", questions(6))
    a, b = Named("a", "A: "), Named("b", "B: ")
    a.forward(batch_size=4)
    b.forward(batch_size=4)
    assert [r["out"].endswith("A: " + r["question"]) for r in a.rows()] == [True] * 6
    assert [r["out"].endswith("B: " + r["question"]) for r in b.rows()] == [True] * 6
    assert sorted(p.name for p in (tmp_path / "cache").glob("*_step1.jsonl")) == [
        "a_step1.jsonl",
        "b_step1.jsonl",
    ]
