"""A step's committed rows by page and by search, without loading the step file.

Each commit records the position its step file reached (``out_position``) and how many rows it
added (``out_rows``). ``CommitIndex`` keeps those as cumulative row counts per step, so the page
at row ``n`` is one bisection, one seek to the commit at or before ``n`` and a few skipped lines,
however large the file. Rows past the last commit — a batch a running process is appending, or
one a killed process never recorded — are never shown.
"""

from __future__ import annotations

import bisect
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AnyStr

import orjson

from datamill.cli.cachedir import CacheDir, step_file
from datamill.core.rowfiles import Row, open_reader
from datamill.core.state import StateDB

#: Bytes read per block when searching a JSONL step file.
SEARCH_BLOCK = 4 << 20
#: Characters that JSON escapes: a query holding one cannot be found in the raw text.
_ESCAPED = frozenset('"\\') | {chr(code) for code in range(32)}


@dataclass
class CommitIndex:
    """One step's commits: cumulative output rows and the file position after each."""

    ends: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    last: tuple[int, float] | None = None  # (seq, committed_at) of the newest commit read

    @property
    def rows(self) -> int:
        return self.ends[-1] if self.ends else 0

    @property
    def end_position(self) -> int:
        return self.positions[-1] if self.positions else 0

    def seek(self, row: int) -> tuple[int, int]:
        """The commit at or before ``row``: (rows before it, file position where they end)."""
        at = bisect.bisect_right(self.ends, row) - 1
        return (self.ends[at], self.positions[at]) if at >= 0 else (0, 0)


class CommitIndexes:
    """``CommitIndex`` per (state database, step), extended with new commits on each read.

    A commit is never changed in place: a rewind deletes the newest ones and later commits reuse
    their sequence numbers with new times. So an index stays valid while its newest commit is
    still recorded unchanged; otherwise it is rebuilt. Safe to share between threads.
    """

    def __init__(self) -> None:
        self._indexes: dict[tuple[str, int], CommitIndex] = {}
        self._lock = threading.Lock()

    def get(self, state: StateDB, step: int) -> CommitIndex:
        key = (str(state.path.resolve()), step)
        with self._lock:
            index = self._indexes.get(key)
            if index is None or not _still_valid(state, step, index):
                index = CommitIndex()
            _extend(state, step, index)
            self._indexes[key] = index
            return index


def _still_valid(state: StateDB, step: int, index: CommitIndex) -> bool:
    if index.last is None:
        return True
    row = state.conn.execute(
        "SELECT committed_at FROM commits WHERE step=? AND seq=?", (step, index.last[0])
    ).fetchone()
    return row is not None and float(row[0]) == index.last[1]


def _extend(state: StateDB, step: int, index: CommitIndex) -> None:
    after = index.last[0] if index.last else 0
    total = index.rows
    for seq, out_rows, position, committed_at in state.conn.execute(
        "SELECT seq, out_rows, out_position, committed_at FROM commits WHERE step=? AND seq>? ORDER BY seq",
        (step, after),
    ):
        total += int(out_rows)
        index.ends.append(total)
        index.positions.append(int(position))
        index.last = (int(seq), float(committed_at))


@dataclass
class RowPage:
    """Numbered rows and the step's committed row count; ``next_row`` continues a search."""

    rows: list[tuple[int, Row]]
    total: int
    next_row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "next_row": self.next_row,
            "rows": [{"row": number, "values": row} for number, row in self.rows],
        }


def read_page(
    cache: CacheDir, state: StateDB, indexes: CommitIndexes, step: int, offset: int, limit: int
) -> RowPage:
    """Committed rows ``offset`` .. ``offset + limit`` of step ``step``."""
    index = indexes.get(state, step)
    count = max(0, min(limit, index.rows - offset))
    if count == 0:
        return RowPage([], index.rows)
    path, fmt = step_file(cache, state, step)
    rows = list(itertools.islice(_rows_from(path, fmt, index, offset), count))
    return RowPage(list(enumerate(rows, start=offset)), index.rows)


def _rows_from(path: Path, fmt: str, index: CommitIndex, row: int) -> Iterator[Row]:
    before, position = index.seek(row)
    if fmt != "jsonl":
        rows = (found for found, _ in open_reader(path, fmt).iter_from(position))
        yield from itertools.islice(rows, row - before, None)
        return
    with path.open("rb") as handle:
        handle.seek(position)
        skip = row - before
        for line in handle:
            if not line.strip():
                continue
            if skip:
                skip -= 1
                continue
            yield orjson.loads(line)


def search_rows(
    cache: CacheDir,
    state: StateDB,
    indexes: CommitIndexes,
    step: int,
    query: str,
    *,
    start: int,
    limit: int,
    seconds: float,
) -> RowPage:
    """Up to ``limit`` committed rows from row ``start`` on whose values contain ``query``
    (case-insensitive). Stops after ``seconds``; ``next_row`` then says where to go on."""
    index = indexes.get(state, step)
    needle = query.lower()
    deadline = time.monotonic() + seconds
    path, fmt = step_file(cache, state, step)
    if fmt == "jsonl" and needle and not (_ESCAPED & set(needle)):
        found, next_row = _scan_jsonl(path, index, needle, start, limit, deadline)
    else:
        found, next_row = _scan_rows(path, fmt, index, needle, start, limit, deadline)
    return RowPage(found, index.rows, next_row)


def row_matches(row: Row, needle: str) -> bool:
    """Whether any value of ``row`` (nested values as JSON text) contains ``needle``."""
    for value in row.values():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if needle in text.lower():
            return True
    return False


def _scan_rows(
    path: Path, fmt: str, index: CommitIndex, needle: str, start: int, limit: int, deadline: float
) -> tuple[list[tuple[int, Row]], int | None]:
    found: list[tuple[int, Row]] = []
    if start >= index.rows:
        return found, None
    rows = itertools.islice(_rows_from(path, fmt, index, start), index.rows - start)
    for number, row in enumerate(rows, start=start):
        if row_matches(row, needle):
            found.append((number, row))
            if len(found) >= limit:
                return found, number + 1 if number + 1 < index.rows else None
        if time.monotonic() > deadline:
            return found, number + 1 if number + 1 < index.rows else None
    return found, None


def _scan_jsonl(
    path: Path, index: CommitIndex, needle: str, start: int, limit: int, deadline: float
) -> tuple[list[tuple[int, Row]], int | None]:
    """Search the raw text block by block and parse only the lines that contain ``needle``.

    An ASCII needle is searched in the bytes (``bytes.lower`` folds ASCII letters only, which is
    all an ASCII needle can match, at several times the speed of decoding); any other needle in
    the decoded text. Every block ends at a line end, so lines and row numbers stay aligned.
    """
    found: list[tuple[int, Row]] = []
    if start >= index.rows:
        return found, None
    position = _position_of(path, index, start)
    end = index.end_position
    row = start
    with path.open("rb") as handle:
        handle.seek(position)
        while position < end:
            data = handle.read(min(SEARCH_BLOCK, end - position))
            if not data:
                break
            if not data.endswith(b"\n") and position + len(data) < end:
                data += handle.readline()
            position += len(data)
            if needle.isascii():
                hits = _matching_lines(data.lower(), needle.encode(), b"\n")
            else:
                hits = _matching_lines(data.decode("utf-8", errors="replace").lower(), needle, "\n")
            lines: list[bytes] = []
            for line_no in hits:
                lines = lines or data.split(b"\n")
                candidate = orjson.loads(lines[line_no])
                if row_matches(candidate, needle):
                    found.append((row + line_no, candidate))
                    if len(found) >= limit:
                        following = row + line_no + 1
                        return found, following if following < index.rows else None
            row += data.count(b"\n")
            if time.monotonic() > deadline and row < index.rows:
                return found, row
    return found, None


def _matching_lines(text: AnyStr, pattern: AnyStr, newline: AnyStr) -> Iterator[int]:
    """The numbers (from 0) of the lines of ``text`` that contain ``pattern``, each once."""
    line_no = 0
    counted = 0
    hit = text.find(pattern)
    while hit >= 0:
        line_no += text.count(newline, counted, hit)
        counted = hit
        yield line_no
        line_end = text.find(newline, hit)
        if line_end < 0:
            return
        hit = text.find(pattern, line_end + 1)


def _position_of(path: Path, index: CommitIndex, row: int) -> int:
    """The byte offset where committed row ``row`` starts in a JSONL step file."""
    before, position = index.seek(row)
    with path.open("rb") as handle:
        handle.seek(position)
        for _ in range(row - before):
            position += len(handle.readline())
    return position
