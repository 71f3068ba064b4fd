"""Reading and appending rows in JSONL, CSV and Parquet, addressed by resumable positions.

A *position* is an opaque integer that a reader hands back after each row and accepts to seek
straight to the next one: a byte offset for JSONL and CSV, a row count for a Parquet step
directory (``datamill.core.parquet_steps``) and for a single Parquet file. Resume stores the
position in the state database and seeks there in O(1): no rescan of what was done.

Writers append whole batches and make them durable (flush + fsync, or temp file + rename for
Parquet files) before the caller records the commit; ``truncate`` drops whatever was written
after the last commit (a torn line, or an append that never committed).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from datamill.core import faults
from datamill.core.inputs import InputSource
from datamill.core.parquet_steps import ParquetDirReader, ParquetDirWriter, iter_parquet_rows, stored_rows
from datamill.errors import ConfigError, InputFileError

Row = dict[str, Any]
FORMATS = ("jsonl", "csv", "parquet")
#: One JSON object per line, keys as written; non-string keys are stringified, not an error.
_ROW_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_BOM = b"\xef\xbb\xbf"
#: The largest CSV field read (the C long limit of the csv module).
_CSV_FIELD_LIMIT = 2**31 - 1


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the row format of ``path`` from its extension (``.json`` lines count as JSONL)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "parquet"):
        return suffix
    raise ConfigError(f"{path}: unknown file type {suffix!r}; use .jsonl, .csv or .parquet")


def _line_number(path: Path, byte_offset: int) -> int:
    """1-based line number of ``byte_offset``; used only to word an error message."""
    with path.open("rb") as handle:
        return handle.read(byte_offset).count(b"\n") + 1


class JsonlReader:
    """Streams JSON objects, one per line; blank lines and a leading UTF-8 BOM are skipped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        with self.path.open("rb") as handle:
            handle.seek(position)
            offset = position
            for line in handle:
                start = offset
                offset += len(line)
                if start == 0 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except ValueError as exc:
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as bad:
                        raise InputFileError(
                            f"{self.path}: line {_line_number(self.path, start)} is not UTF-8 ({bad.reason}); "
                            "re-encode the file as UTF-8"
                        ) from None
                    raise InputFileError(
                        f"{self.path}: line {_line_number(self.path, start)} is not valid JSON ({exc}); "
                        "fix that line and rerun — responses already received are reused, not paid again"
                    ) from None
                if not isinstance(row, dict):
                    raise InputFileError(
                        f"{self.path}: line {_line_number(self.path, start)} is a JSON "
                        f"{type(row).__name__}, not an object; each line must be one JSON object"
                    )
                yield row, offset


class CsvReader:
    """Streams CSV records as dicts keyed by the header; quoted newlines are read correctly.

    Values stay strings, as CSV carries no types. Positions are byte offsets of record starts,
    tracked by feeding ``csv.reader`` one decoded line at a time (it never reads ahead). The
    reader is strict: a quote left open, or a record whose field count differs from the
    header's, is an error naming the line where that record starts — never records merged
    into one field. A leading UTF-8 BOM (Excel's "CSV UTF-8") is not part of the first column.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        with self.path.open("rb") as handle:
            consumed = [0]
            reader = self._records(handle, consumed)
            header = self._next_record(reader, 0)
            if header is None:
                return
            if position > consumed[0]:
                handle.seek(position)
                consumed[0] = position
                reader = self._records(handle, consumed)
            while True:
                start = consumed[0]
                record = self._next_record(reader, start)
                if record is None:
                    return
                if not record:
                    continue
                if len(record) != len(header):
                    raise InputFileError(
                        f"{self.path}: line {_line_number(self.path, start)} has {len(record)} field(s) "
                        f"but the header has {len(header)}; quote fields that hold commas or fix that "
                        "record, then rerun"
                    )
                yield dict(zip(header, record, strict=True)), consumed[0]

    def header(self) -> list[str]:
        with self.path.open("rb") as handle:
            return self._next_record(self._records(handle, [0]), 0) or []

    def _records(self, handle: io.BufferedReader, consumed: list[int]) -> Iterator[list[str]]:
        # csv's field limit (128 KiB by default) is process-wide; it is only ever raised here,
        # so that any value datamill wrote, or a user's CSV holds, reads back.
        csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
        return csv.reader(self._decoded_lines(handle, consumed), strict=True)

    def _next_record(self, reader: Iterator[list[str]], start: int) -> list[str] | None:
        try:
            return next(reader, None)
        except csv.Error as exc:
            line = _line_number(self.path, start)
            if "unexpected end of data" in str(exc):
                raise InputFileError(
                    f"{self.path}: line {line} starts a record whose quote is never closed (it would run "
                    'to the end of the file); fix its quoting (a quote inside a quoted field is written "") '
                    "and rerun"
                ) from None
            raise InputFileError(
                f"{self.path}: line {line} starts a record that is not valid CSV ({exc}); fix its "
                'quoting (a quote inside a quoted field is written "") and rerun'
            ) from None

    def _decoded_lines(self, handle: io.BufferedReader, consumed: list[int]) -> Iterator[str]:
        for line in handle:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputFileError(
                    f"{self.path}: line {_line_number(self.path, consumed[0])} is not UTF-8 "
                    f"({exc.reason}); re-encode the file as UTF-8"
                ) from None
            if consumed[0] == 0:
                text = text.removeprefix(_BOM.decode())
            consumed[0] += len(line)
            yield text


class ParquetFileReader:
    """Streams a single Parquet file; the position is the row index."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputFileError(f"{self.path}: not a readable Parquet file ({exc})") from None
        for index, row in enumerate(iter_parquet_rows(parquet, position), start=position + 1):
            yield row, index


RowReader = JsonlReader | CsvReader | ParquetFileReader | ParquetDirReader | InputSource


def open_reader(path: str | os.PathLike[str] | InputSource, fmt: str | None = None) -> RowReader:
    """A reader for ``path``; a missing file is an ``InputFileError`` that names it.

    An ``InputSource`` (a dataset, a DataFrame, a JSON array, see ``datamill.core.inputs``)
    is its own reader.
    """
    if isinstance(path, InputSource):
        return path
    path = Path(path)
    fmt = fmt or detect_format(path)
    if not path.exists():
        raise InputFileError(f"input file {path} does not exist; check first_entry_file_name and cache_path")
    if fmt == "jsonl":
        return JsonlReader(path)
    if fmt == "csv":
        return CsvReader(path)
    if fmt == "parquet":
        return ParquetDirReader(path) if path.is_dir() else ParquetFileReader(path)
    raise ConfigError(f"unknown row format {fmt!r}; use one of {', '.join(FORMATS)}")


def iter_rows(path: str | os.PathLike[str] | InputSource, fmt: str | None = None) -> Iterator[Row]:
    """Every row of a file, from the start."""
    for row, _ in open_reader(path, fmt).iter_from(0):
        yield row


def read_head(path: str | os.PathLike[str] | InputSource, limit: int = 20) -> list[Row]:
    """The first ``limit`` rows: what ``compile()`` reads to learn the columns."""
    rows: list[Row] = []
    for row in iter_rows(path):
        rows.append(row)
        if len(rows) >= limit:
            break
    return rows


class JsonlWriter:
    """Appends batches as JSON lines; the position is the file's byte length.

    ``append`` writes without syncing so a group of batches pays one ``sync``; the caller
    records the commit only after ``sync`` returns.
    """

    fmt = "jsonl"

    def __init__(self, path: Path, position: int) -> None:
        self.path = path
        self._handle = path.open("ab")
        if self._handle.tell() > position:
            self._handle.truncate(position)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self._handle.seek(position)
        self.position = position

    def append(self, rows: list[Row]) -> int:
        if rows:
            self._write(b"".join(orjson.dumps(row, default=str, option=_ROW_OPTIONS) for row in rows))
        return self.position

    def _write(self, payload: bytes) -> None:
        if faults.armed("mid_append"):
            self._handle.write(payload[: max(1, len(payload) // 2)])
            self._handle.flush()
            faults.kill_now()
        self._handle.write(payload)
        self.position += len(payload)

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


class CsvWriter(JsonlWriter):
    """Appends batches as CSV records under a header fixed by the first rows written.

    Non-string values are written as JSON text. A row with a column the header lacks is an
    error rather than a silently dropped value.
    """

    fmt = "csv"

    def __init__(self, path: Path, position: int) -> None:
        super().__init__(path, position)
        self._header: list[str] | None = CsvReader(path).header() if position > 0 else None

    def append(self, rows: list[Row]) -> int:
        if not rows:
            return self.position
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if self._header is None:
            self._header = list(dict.fromkeys(key for row in rows for key in row))
            writer.writerow(self._header)
        header = self._header
        known = set(header)
        for row in rows:
            extra = [key for key in row if key not in known]
            if extra:
                raise ConfigError(
                    f"{self.path}: row has column(s) {extra} that the CSV header {header} lacks; "
                    "use cache_type='jsonl' or 'parquet' for rows whose columns vary"
                )
            writer.writerow([_csv_cell(row.get(key)) for key in header])
        self._write(buffer.getvalue().encode())
        return self.position


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


RowWriter = JsonlWriter | CsvWriter | ParquetDirWriter


def open_writer(path: Path, fmt: str, position: int = 0) -> RowWriter:
    """A writer positioned at ``position``: anything written after it is cut off first."""
    if fmt == "jsonl":
        return JsonlWriter(path, position)
    if fmt == "csv":
        return CsvWriter(path, position)
    if fmt == "parquet":
        return ParquetDirWriter(path, position)
    raise ConfigError(f"unknown cache_type {fmt!r}; use one of {', '.join(FORMATS)}")


def count_rows(path: str | os.PathLike[str] | InputSource, fmt: str | None = None) -> int | None:
    """Number of rows, for progress totals: newline count for JSONL, metadata for Parquet;
    None for an ``InputSource`` that cannot tell without reading everything."""
    if isinstance(path, InputSource):
        return path.count()
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return stored_rows(path) if path.is_dir() else pq.ParquetFile(path).metadata.num_rows
    if fmt == "csv":
        return sum(1 for _ in CsvReader(path).iter_from(0))
    count = 0
    last = b"\n"
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def stored_position(path: Path, fmt: str) -> int:
    """The position a step file reaches as it is on disk (0 when it does not exist): what a
    commit's ``out_position`` is checked against."""
    if fmt == "parquet":
        return stored_rows(path)
    return path.stat().st_size if path.is_file() else 0
