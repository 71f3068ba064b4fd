"""compile(): traces forward() without sending anything, checks every key, reads only the head."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from engine_helpers import QAPipeline, questions, read_jsonl, write_jsonl

from datamill.errors import ConfigError, InputFileError, KeyValidationError


def test_compile_traces_the_steps_without_sending_or_writing(simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(5))
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    p.compile()
    assert simulator.stats()["requests"] == 0
    assert [path.name for path in p.step_paths()] == ["qa_step1.jsonl", "qa_step2.jsonl"]
    assert not (tmp_path / "cache").exists()


def test_compile_reports_every_bad_key_at_once_with_step_and_columns(simulator, tmp_path: Path) -> None:
    class Miswired(QAPipeline):
        def forward(self) -> None:
            self.answerer.run(self.storage.step(), input_key="questoin", output_key="answer")
            self.judge.run(self.storage.step(), input_key="anwser", output_key="verdict")

    source = write_jsonl(tmp_path / "in.jsonl", questions(5))
    with pytest.raises(KeyValidationError) as caught:
        Miswired(source, tmp_path / "cache", simulator.openai_base).compile()
    message = str(caught.value)
    assert "step 0 (StoppableGenerator)" in message and "'questoin'" in message
    assert "step 1 (StoppableGenerator)" in message and "'anwser'" in message
    assert "['id', 'question']" in message  # what step 0 could have used
    assert "['id', 'question', 'answer']" in message  # step 1 also sees step 0's output
    assert isinstance(caught.value, ConfigError)
    assert simulator.stats()["requests"] == 0


def test_a_key_produced_by_a_later_step_is_not_available_earlier(simulator, tmp_path: Path) -> None:
    class Backwards(QAPipeline):
        def forward(self) -> None:
            self.judge.run(self.storage.step(), input_key="answer", output_key="verdict")
            self.answerer.run(self.storage.step(), input_key="question", output_key="answer")

    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    with pytest.raises(KeyValidationError, match=r"step 0 .*'answer'"):
        Backwards(source, tmp_path / "cache", simulator.openai_base).compile()


def test_keys_present_only_in_later_head_rows_still_count(simulator, tmp_path: Path) -> None:
    rows = [{"id": 0, "other": "x"}] + questions(4)[1:]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    QAPipeline(source, tmp_path / "cache", simulator.openai_base).compile()


def test_compile_reads_only_the_head_so_a_bad_line_1000_compiles(simulator, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = questions(1200)
    lines = [json.dumps(row) for row in rows]
    lines[999] = '{"id": 999, "question": "unterminated'
    source.write_text("\n".join(lines) + "\n")
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    p.compile()
    assert simulator.stats()["requests"] == 0

    with pytest.raises(InputFileError) as caught:
        p.forward(batch_size=50)
    message = str(caught.value)
    assert str(source) in message and "line 1000 " in message

    kept = read_jsonl(p.step_paths()[0])
    # Batches before the bad line were committed, not thrown away (at most the engine's
    # in-flight window of 100 rows was still uncommitted when the reader failed).
    assert len(kept) >= 850 and len(kept) % 50 == 0
    assert [row["id"] for row in kept] == list(range(len(kept)))
    assert not p.step_paths()[1].exists() or read_jsonl(p.step_paths()[1]) == []
    answered = simulator.stats()["answered"]
    assert answered <= 999

    # The user fixes the line and reruns: every row once, in order, and nothing paid twice.
    lines[999] = json.dumps(rows[999])
    source.write_text("\n".join(lines) + "\n")
    fixed = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    fixed.forward(batch_size=50)
    assert [row["id"] for row in fixed.rows()] == list(range(1200))
    stats = simulator.stats()
    assert stats["duplicates"] == 0
    assert stats["answered"] == 2 * 1200


def test_compile_fails_on_a_missing_input_file_naming_it(simulator, tmp_path: Path) -> None:
    missing = tmp_path / "data" / "nope.jsonl"
    p = QAPipeline(missing, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(InputFileError, match=str(missing)):
        p.compile()
    with pytest.raises(InputFileError, match=str(missing)):
        p.forward(batch_size=4)


def test_an_empty_input_or_columnless_first_rows_warn_that_keys_were_not_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator

    class Misspelt(BatchedPipelineABC):
        def __init__(self, source: Path) -> None:
            super().__init__()
            self.storage = BatchedFileStorage(str(source), cache_path=str(tmp_path / "cache"))
            self.gen = PromptedGenerator(APILLMServing_request("http://127.0.0.1:9/v1"))

        def forward(self) -> None:
            self.gen.run(self.storage.step(), input_key="qestion", output_key="answer")

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    columnless = tmp_path / "columnless.jsonl"
    columnless.write_text("{}\n{}\n")
    for source, what in ((empty, "is empty"), (columnless, "has no columns in its first 2 row(s)")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="datamill"):
            Misspelt(source).compile()
        assert f"{source} {what}: compile() did not check the input keys" in caplog.text
