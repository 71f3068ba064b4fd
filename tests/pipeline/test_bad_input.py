"""Bad input reaches the user as a clear error, or is read correctly; it never crashes silently."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from engine_helpers import AnswerPipeline, QAPipeline, questions, read_jsonl

from datamill.errors import InputFileError


def test_a_malformed_jsonl_line_is_named_by_file_and_line(simulator, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(row) for row in questions(6)]
    lines[3] = '{"id": 3, "question": "no closing brace"'
    source.write_text("\n".join(lines) + "\n")
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(InputFileError) as caught:
        p.forward(batch_size=2)
    assert f"{source}: line 4 is not valid JSON" in str(caught.value)
    assert simulator.stats()["requests"] == 0


def test_a_non_utf8_input_names_the_file_and_line_and_says_what_to_do(simulator, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": 0, "question": "fine"}\n{"id": 1, "question": "na\xefve"}\n')
    p = AnswerPipeline(source, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(InputFileError) as caught:
        p.forward(batch_size=2)
    message = str(caught.value)
    assert f"{source}: line 2 is not UTF-8" in message and "re-encode" in message


@pytest.mark.parametrize("cache_type", ["jsonl", "csv", "parquet"])
def test_csv_cells_with_newlines_commas_and_quotes_survive_to_the_output(
    simulator, tmp_path: Path, cache_type: str
) -> None:
    tricky = 'first line, with a comma\nsecond line with "quotes", and more\n'
    source = tmp_path / "in.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question"])
        writer.writerow([0, tricky])
        writer.writerow([1, "plain"])
        writer.writerow([2, "ünïcødé ✓"])
    p = AnswerPipeline(source, tmp_path / "cache", simulator.openai_base, cache_type=cache_type)
    summary = p.forward(batch_size=2)
    assert summary.steps[0].rows_out == 3
    rows = list(p.rows())
    assert [row["question"] for row in rows] == [tricky, "plain", "ünïcødé ✓"]
    assert [row["id"] for row in rows] == ["0", "1", "2"]  # CSV carries strings
    assert tricky in rows[0]["answer"]


@pytest.mark.parametrize("cache_type", ["jsonl", "csv", "parquet"])
def test_an_empty_input_completes_with_empty_step_files(simulator, tmp_path: Path, cache_type: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"")
    p = QAPipeline(source, tmp_path / "cache", simulator.openai_base, cache_type=cache_type)
    summary = p.forward(batch_size=4)
    assert summary.status == "complete"
    assert [(s.rows_in, s.rows_out) for s in summary.steps] == [(0, 0), (0, 0)]
    for path in p.step_paths():
        assert path.exists()
        if cache_type == "parquet":
            assert list(path.iterdir()) == []
        else:
            assert path.read_bytes() == b""
    assert list(p.rows()) == []
    assert simulator.stats()["requests"] == 0
    assert p.forward(batch_size=4).already_complete


def test_a_missing_input_file_is_named(simulator, tmp_path: Path) -> None:
    source = tmp_path / "missing.jsonl"
    p = AnswerPipeline(source, tmp_path / "cache", simulator.openai_base)
    with pytest.raises(InputFileError, match=f"{source} does not exist"):
        p.forward(batch_size=4)


def test_blank_lines_in_jsonl_input_are_skipped(simulator, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in questions(3)).replace("\n", "\n\n") + "\n\n")
    p = AnswerPipeline(source, tmp_path / "cache", simulator.openai_base)
    p.forward(batch_size=2)
    assert [row["id"] for row in read_jsonl(p.step_paths()[0])] == [0, 1, 2]
