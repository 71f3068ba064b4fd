"""A step file's committed rows as one Arrow table: only the committed bytes, and a clear error
when the rows cannot share one schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamill.core.state import StepPosition
from datamill.core.step_tables import committed_table
from datamill.errors import ConfigError

LINES = b'{"id": 0, "note": null}\n{"id": 1, "note": "x", "extra": [1]}\n'


def test_only_the_committed_bytes_and_rows_are_read(tmp_path: Path) -> None:
    path = tmp_path / "run_step1.jsonl"
    path.write_bytes(LINES + b'{"id": 2, "note": "uncommitted"}\n{"id": 3, "no')
    table = committed_table(path, "jsonl", StepPosition(out_position=len(LINES), out_rows=2))
    assert table.to_pylist() == [
        {"id": 0, "note": None, "extra": None},
        {"id": 1, "note": "x", "extra": [1]},
    ]


def test_a_step_with_no_committed_row_is_an_empty_table(tmp_path: Path) -> None:
    assert committed_table(tmp_path / "absent.jsonl", "jsonl", StepPosition()).num_rows == 0


def test_a_column_of_mixed_types_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run_step1.jsonl"
    path.write_bytes(b'{"score": 1}\n{"score": "high"}\n')
    with pytest.raises(ConfigError, match=r"run_step1.jsonl: its rows do not fit one Arrow table"):
        committed_table(path, "jsonl", StepPosition(out_position=path.stat().st_size, out_rows=2))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_row_longer_than_a_read_block_is_read(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"run_step1.{fmt}"
    long_text = "x" * (9 << 20)
    if fmt == "jsonl":
        path.write_bytes(b'{"text": "' + long_text.encode() + b'"}\n{"text": "short"}\n')
    else:
        path.write_bytes(b"text\n" + long_text.encode() + b"\nshort\n")
    table = committed_table(path, fmt, StepPosition(out_position=path.stat().st_size, out_rows=2))
    assert table.column("text").to_pylist() == [long_text, "short"]
