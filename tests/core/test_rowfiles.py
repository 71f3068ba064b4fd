"""Row files on disk: resumable positions, torn-line truncation, Parquet parts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datamill.core.parquet_steps import MERGE_FANIN
from datamill.core.rowfiles import (
    CsvReader,
    count_rows,
    iter_rows,
    open_reader,
    open_writer,
    read_head,
)
from datamill.errors import ConfigError, InputFileError

ROWS = [{"id": i, "text": f"row {i}", "tags": [i, i + 1]} for i in range(7)]


def write_batches(path: Path, fmt: str, batches: list[list[dict]]) -> list[int]:
    """Append each batch, syncing after each; return the committed position after each batch."""
    positions = []
    writer = open_writer(path, fmt, 0)
    try:
        for batch in batches:
            position = writer.append(batch)
            writer.sync()
            positions.append(position)
    finally:
        writer.close()
    return positions


def read_with_positions(path: Path, fmt: str, position: int = 0) -> list[tuple[dict, int]]:
    return list(open_reader(path, fmt).iter_from(position))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_iter_from_each_position_resumes_exactly_after_that_row(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"step.{fmt}"
    write_batches(path, fmt, [ROWS[:3], ROWS[3:5], ROWS[5:]])
    pairs = read_with_positions(path, fmt)
    all_rows = [row for row, _ in pairs]
    assert len(all_rows) == len(ROWS)
    assert [str(r["id"]) for r in all_rows] == [str(r["id"]) for r in ROWS]
    for index, (_, position) in enumerate(pairs):
        rest = [row for row, _ in read_with_positions(path, fmt, position)]
        assert rest == all_rows[index + 1 :], f"resuming after row {index}"
    assert [row for row, _ in read_with_positions(path, fmt, 0)] == all_rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_writer_position_is_the_file_length_and_reader_positions_agree(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"step.{fmt}"
    positions = write_batches(path, fmt, [ROWS[:3], ROWS[3:]])
    assert positions[-1] == path.stat().st_size
    reader_positions = [position for _, position in read_with_positions(path, fmt)]
    assert positions[0] == reader_positions[2]
    assert positions[1] == reader_positions[-1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_open_writer_at_committed_position_truncates_a_torn_line(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"step.{fmt}"
    committed = write_batches(path, fmt, [ROWS[:3]])[-1]
    with path.open("ab") as handle:  # a batch that never committed, cut off mid-line
        handle.write(b'{"id": 99, "text": "torn' if fmt == "jsonl" else b'99,"torn\nstill in the cell')
    assert path.stat().st_size > committed

    writer = open_writer(path, fmt, committed)
    assert path.stat().st_size == committed
    writer.append(ROWS[3:5])
    writer.sync()
    writer.close()

    rows = list(iter_rows(path, fmt))
    assert [str(r["id"]) for r in rows] == [str(r["id"]) for r in ROWS[:5]]


def test_csv_writer_reopened_keeps_the_header_and_writes_no_second_one(tmp_path: Path) -> None:
    path = tmp_path / "step.csv"
    committed = write_batches(path, "csv", [ROWS[:2]])[-1]
    writer = open_writer(path, "csv", committed)
    writer.append(ROWS[2:4])
    writer.sync()
    writer.close()
    text = path.read_text()
    assert text.count("id,text,tags") == 1
    assert [r["id"] for r in iter_rows(path)] == ["0", "1", "2", "3"]


def test_csv_quoted_newlines_and_commas_survive_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    tricky = 'line one\nline two, with a comma, and "quotes"'
    path.write_text('id,text\n1,"' + tricky.replace('"', '""') + '"\n2,plain\n', encoding="utf-8")
    rows = list(iter_rows(path))
    assert rows == [{"id": "1", "text": tricky}, {"id": "2", "text": "plain"}]
    pairs = read_with_positions(path, "csv")
    assert [row for row, _ in read_with_positions(path, "csv", pairs[0][1])] == [rows[1]]

    out = tmp_path / "out.csv"
    write_batches(out, "csv", [rows])
    assert list(iter_rows(out)) == rows


def test_csv_writer_refuses_a_row_with_a_column_the_header_lacks(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "step.csv", "csv", 0)
    writer.append([{"a": 1}])
    with pytest.raises(ConfigError, match=r"\['b'\]"):
        writer.append([{"a": 2, "b": 3}])
    writer.close()


def test_parquet_step_positions_are_row_counts_and_an_empty_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "step.parquet"
    positions = write_batches(path, "parquet", [ROWS[:3], [], ROWS[3:5], ROWS[5:]])
    assert path.is_dir()
    assert positions == [3, 3, 5, 7]
    assert list(iter_rows(path, "parquet")) == ROWS
    assert count_rows(path, "parquet") == len(ROWS)


def test_parquet_writer_at_a_position_removes_later_files_and_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "step.parquet"
    positions = write_batches(path, "parquet", [ROWS[:3], ROWS[3:5], ROWS[5:]])
    (path / "rows-000000000007.parquet.tmp").write_bytes(b"half-written")

    writer = open_writer(path, "parquet", positions[0])
    assert sorted(p.name for p in path.iterdir()) == ["rows-000000000000.parquet"]
    writer.append(ROWS[3:])
    writer.sync()
    writer.close()
    assert list(iter_rows(path, "parquet")) == ROWS


def many_rows(count: int) -> list[dict]:
    return [{"id": i, "text": f"row {i}"} for i in range(count)]


def test_a_parquet_step_of_tiny_batches_ends_as_one_file(tmp_path: Path) -> None:
    path = tmp_path / "step.parquet"
    rows = many_rows(2000)
    positions = write_batches(path, "parquet", [rows[i : i + 4] for i in range(0, len(rows), 4)])
    assert positions[-1] == 2000
    assert len(list(path.iterdir())) == 1  # not 500
    assert list(iter_rows(path, "parquet")) == rows
    assert count_rows(path, "parquet") == 2000


def test_a_parquet_step_keeps_few_files_while_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "step.parquet"
    rows = many_rows(1000)
    writer = open_writer(path, "parquet", 0)
    try:
        for start in range(0, len(rows), 4):
            writer.append(rows[start : start + 4])
            writer.sync()
            assert len(list(path.iterdir())) <= 3 * MERGE_FANIN
    finally:
        writer.close()
    assert list(iter_rows(path, "parquet")) == rows


def test_a_parquet_step_resumes_at_every_batch_after_merges(tmp_path: Path) -> None:
    rows = many_rows(150)
    batches = [rows[i : i + 5] for i in range(0, len(rows), 5)]
    full = tmp_path / "full.parquet"
    positions = write_batches(full, "parquet", batches)
    for index in range(0, len(positions), 7):
        position = positions[index]
        assert [row for row, _ in read_with_positions(full, "parquet", position)] == rows[position:]
        path = tmp_path / f"resumed-{index}.parquet"
        write_batches(path, "parquet", batches)  # written (and merged) past the commit, as a killed run may
        writer = open_writer(path, "parquet", position)  # cut back to the commit...
        for batch in batches[index + 1 :]:  # ...and continued
            writer.append(batch)
            writer.sync()
        writer.close()
        assert list(iter_rows(path, "parquet")) == rows, f"resumed after batch {index}"


KILLED_WRITER = """
import sys
from pathlib import Path
from datamill.core.rowfiles import open_writer
writer = open_writer(Path(sys.argv[1]), "parquet", 0)
for start in range(0, 400, 4):
    writer.append([{"id": i, "text": f"row {i}"} for i in range(start, start + 4)])
    writer.sync()
"""


def test_a_kill_in_the_middle_of_a_merge_loses_and_repeats_no_row(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "step.parquet"
    env = {**os.environ, "DATAMILL_FAULT": "mid_merge:2"}
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL
    held = list(iter_rows(path, "parquet"))
    assert held == many_rows(len(held)) and len(held) >= 64  # the merged file, its leftovers skipped
    writer = open_writer(path, "parquet", len(held))
    writer.append(many_rows(len(held) + 4)[len(held) :])
    writer.sync()
    writer.close()
    assert list(iter_rows(path, "parquet")) == many_rows(len(held) + 4)
    assert len(list(path.iterdir())) == 1


def test_single_parquet_input_file_positions_are_row_indexes(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "input.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=2)
    pairs = read_with_positions(path, "parquet")
    assert [position for _, position in pairs] == list(range(1, len(ROWS) + 1))
    assert [row for row, _ in read_with_positions(path, "parquet", 3)] == ROWS[3:]


def write_jsonl_with_bad_line(path: Path, rows: int, bad_line: int) -> None:
    lines = [json.dumps({"id": i, "text": f"t{i}"}) for i in range(rows)]
    lines[bad_line - 1] = '{"id": broken'
    path.write_text("\n".join(lines) + "\n")


def test_read_head_reads_only_the_first_rows_of_a_file_broken_further_down(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl_with_bad_line(path, 1200, bad_line=1000)
    assert len(read_head(path, 20)) == 20
    with pytest.raises(InputFileError) as caught:
        list(iter_rows(path))
    assert str(path) in str(caught.value)
    assert "line 1000 " in str(caught.value)


def test_a_jsonl_line_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InputFileError, match=r"line 2 is a JSON list"):
        list(iter_rows(path))


def test_blank_jsonl_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n')
    assert list(iter_rows(path)) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_non_utf8_input_names_the_file_and_line(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    else:
        path.write_bytes(b"text\nok\ncaf\xe9\n")
    with pytest.raises(InputFileError) as caught:
        list(iter_rows(path))
    message = str(caught.value)
    assert str(path) in message and "not UTF-8" in message
    assert ("line 2 " if fmt == "jsonl" else "line 3 ") in message


def test_missing_input_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "in.jsonl"
    with pytest.raises(InputFileError, match=str(path)):
        open_reader(path)


def test_unknown_extension_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown file type"):
        open_reader(tmp_path / "in.txt")


def test_empty_files_have_no_rows(tmp_path: Path) -> None:
    for name in ("in.jsonl", "in.csv"):
        (tmp_path / name).write_bytes(b"")
        assert list(iter_rows(tmp_path / name)) == []
        assert read_head(tmp_path / name) == []
    assert CsvReader(tmp_path / "in.csv").header() == []
    assert count_rows(tmp_path / "in.jsonl") == 0


def test_count_rows_counts_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')
    assert count_rows(path) == 2


def test_a_csv_stray_quote_is_an_error_naming_the_line_where_the_record_starts(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    lines = ["id,text"] + [f"{i},row {i}" for i in range(50)]
    lines[11] = '10,"a stray quote'  # row 10 starts on line 12; its quote is never closed
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError) as caught:
        list(iter_rows(path))
    message = str(caught.value)
    assert f"{path}: line 12 " in message and "quote" in message


@pytest.mark.parametrize("record", ["3,x,extra", "3"])
def test_a_csv_record_with_the_wrong_number_of_fields_names_its_line(tmp_path: Path, record: str) -> None:
    path = tmp_path / "in.csv"
    path.write_text(f'id,text\n0,"two\nlines"\n1,b\n{record}\n4,e\n')
    with pytest.raises(InputFileError) as caught:
        list(iter_rows(path))
    message = str(caught.value)
    assert f"{path}: line 5 " in message and "the header has 2" in message


def test_a_csv_error_after_a_resume_still_names_the_right_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,text\n0,a\n1,b\n2,c,d\n")
    _, after_first = next(iter(open_reader(path).iter_from(0)))
    with pytest.raises(InputFileError, match=r"line 4 "):
        list(open_reader(path).iter_from(after_first))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_utf8_bom_is_stripped_and_keeps_every_row(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"in.{fmt}"
    body = '{"id": "0", "text": "a"}\n{"id": "1", "text": "b"}\n' if fmt == "jsonl" else "id,text\n0,a\n1,b\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert list(iter_rows(path)) == [{"id": "0", "text": "a"}, {"id": "1", "text": "b"}]
    assert read_head(path) == [{"id": "0", "text": "a"}, {"id": "1", "text": "b"}]
    if fmt == "csv":
        assert CsvReader(path).header() == ["id", "text"]


def test_the_jsonl_advice_for_a_bad_line_never_says_to_remove_it(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(InputFileError) as caught:
        list(iter_rows(path))
    assert "line 2 is not valid JSON" in str(caught.value) and "remove" not in str(caught.value)


@pytest.mark.parametrize("how", ["written", "input"])
def test_a_csv_field_over_128_kib_round_trips(tmp_path: Path, how: str) -> None:
    path = tmp_path / "step.csv"
    big = "x" * (300 * 1024)
    rows = [{"id": "0", "text": "small"}, {"id": "1", "text": big}, {"id": "2", "text": "after"}]
    if how == "written":
        write_batches(path, "csv", [rows[:2], rows[2:]])
    else:
        path.write_text("id,text\n" + "".join(f"{r['id']},{r['text']}\n" for r in rows))
    assert list(iter_rows(path)) == rows
    assert count_rows(path) == 3
