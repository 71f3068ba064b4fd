"""A Parquet step: a directory of Parquet files that grows batch by batch and stays few files.

Each batch is written as one file named by the index of its first row
(``rows-000000000000.parquet``), through a temporary file, fsync and rename, so a committed
batch is never half-written. Small files are then merged as they pile up, the way a
log-structured store does: ``MERGE_FANIN`` consecutive files of the same size class become
one, so a row is rewritten about log8(rows per file / rows per batch) times, and the files of a
step that has finished are at least ``TARGET_ROWS`` rows (or ``TARGET_BYTES``) each, but for
its tail. ``batch_size=4`` over 5,000 rows makes one file, not 1,250.

A position is a row count, whatever the files: merging changes no position, and resume seeks
by the files' row counts (Parquet footers). A merge writes the new file under the name of the
first file it replaces, then removes the others; a kill in between leaves files whose rows a
merged file already holds, which readers skip and the next writer removes. Only files that
were synced before the current group of appends (so committed, or being committed) are
merged, and a writer opened at a position cuts a file that reaches past it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamill.core import faults
from datamill.errors import InputFileError, StateError

log = logging.getLogger(__name__)

Row = dict[str, Any]

#: A file this large (rows or bytes) is never merged again.
TARGET_ROWS = 100_000
TARGET_BYTES = 64 * 1024 * 1024
#: Files of one size class merged at a time; with more than ``MAX_SMALL_FILES`` small files
#: the newest ``MERGE_FANIN`` are merged whatever their sizes.
MERGE_FANIN = 8
MAX_SMALL_FILES = 4 * MERGE_FANIN
_NAME = re.compile(r"rows-(\d{12})\.parquet")


def file_name(start: int) -> str:
    return f"rows-{start:012d}.parquet"


@dataclass(frozen=True)
class StepFile:
    """One file of a Parquet step: the index of its first row, its rows, its size on disk."""

    start: int
    rows: int
    size: int
    path: Path

    @property
    def end(self) -> int:
        return self.start + self.rows

    @property
    def small(self) -> bool:
        return self.rows < TARGET_ROWS and self.size < TARGET_BYTES


def step_files(path: Path) -> tuple[list[StepFile], list[Path]]:
    """The files holding the step's rows, in order, and the leftovers a stopped merge left
    (files whose rows a merged file already holds)."""
    import pyarrow.parquet as pq

    if not path.is_dir():
        return [], []
    if any(path.glob("part-*.parquet")):
        raise StateError(
            f"{path} holds Parquet parts written by an older datamill (one file per batch), which "
            "this version does not resume; export its rows with that version, or move the directory "
            "aside and rerun"
        )
    named = sorted((int(m.group(1)), p) for p in path.iterdir() if (m := _NAME.fullmatch(p.name)))
    if not named and any(path.glob("*.parquet")):
        raise InputFileError(
            f"{path} holds Parquet files that are not a datamill step (rows-NNNNNNNNNNNN.parquet); "
            "give one Parquet file as the input"
        )
    chain: list[StepFile] = []
    leftovers: list[Path] = []
    expected = 0
    for start, file in named:
        if start < expected:
            leftovers.append(file)
            continue
        if start > expected:
            raise InputFileError(
                f"{path}: no file holds rows {expected} to {start - 1} (the next file is {file.name}); "
                "the step directory was changed outside datamill"
            )
        try:
            rows = pq.ParquetFile(file).metadata.num_rows
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputFileError(f"{file}: not a readable Parquet file ({exc})") from None
        chain.append(StepFile(start, rows, file.stat().st_size, file))
        expected = start + rows
    return chain, leftovers


def stored_rows(path: Path) -> int:
    """How many rows the step directory holds (0 when it does not exist)."""
    chain, _ = step_files(path)
    return chain[-1].end if chain else 0


def iter_parquet_rows(parquet: Any, skip: int) -> Iterator[Row]:
    """Rows of an open ``pyarrow.parquet.ParquetFile`` after the first ``skip``, read one row
    group at a time; row groups before ``skip`` are not read."""
    index = 0
    for group in range(parquet.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        if index + group_rows <= skip:
            index += group_rows
            continue
        for row in parquet.read_row_group(group).to_pylist():
            if index >= skip:
                yield row
            index += 1


class ParquetDirReader:
    """Streams a Parquet step directory; the position is the number of rows before the next."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        import pyarrow.parquet as pq

        chain, _ = step_files(self.path)
        while True:
            file = next((f for f in chain if f.start <= position < f.end), None)
            if file is None:
                chain, _ = step_files(self.path)  # a writer may have merged or added files
                file = next((f for f in chain if f.start <= position < f.end), None)
                if file is None:
                    return
            try:
                parquet = pq.ParquetFile(file.path)
            except FileNotFoundError:  # merged away meanwhile: its rows are in another file now
                chain = []
                continue
            for row in iter_parquet_rows(parquet, position - file.start):
                position += 1
                yield row, position


class ParquetDirWriter:
    """Appends batches to a Parquet step directory, merging small files (module docstring)."""

    fmt = "parquet"

    def __init__(self, path: Path, position: int) -> None:
        self.path = path
        self.position = position
        path.mkdir(parents=True, exist_ok=True)
        for entry in path.glob("*.tmp"):
            entry.unlink()
        chain, leftovers = step_files(path)
        for entry in leftovers:
            entry.unlink()
        self._files: list[StepFile] = []
        for file in chain:
            if file.start >= position:
                file.path.unlink()
            elif file.end > position:
                self._files.append(self._cut(file, position - file.start))
            else:
                self._files.append(file)
        reached = self._files[-1].end if self._files else 0
        if reached < position:
            raise StateError(
                f"{path} holds {reached} rows but {position} were committed; rerun to recompute the step"
            )
        _fsync_dir(path)
        self._synced = len(self._files)

    def append(self, rows: list[Row]) -> int:
        import pyarrow as pa

        if not rows:
            return self.position
        self._merge_small_files(final=False)
        final = self.path / file_name(self.position)
        self._write(pa.Table.from_pylist(rows), final, crash_point=True)
        self._files.append(StepFile(self.position, len(rows), final.stat().st_size, final))
        self.position += len(rows)
        return self.position

    def sync(self) -> None:
        """Make the appended files durable; the caller commits them next, so from the next
        append on they may be merged."""
        _fsync_dir(self.path)
        self._synced = len(self._files)

    def close(self) -> None:
        """Merge what is left small (a finished step ends with few files)."""
        self._merge_small_files(final=True)

    # --- merging -------------------------------------------------------------------------

    def _merge_small_files(self, *, final: bool) -> None:
        """Merge committed small files: ``MERGE_FANIN`` of one size class at a time, or, at
        ``final``, every run of small files up to ``TARGET_ROWS``. A merge that cannot be done
        (rows whose columns differ, a full disk) leaves the files as they are, which is correct."""
        while True:
            settled = self._files[: self._synced]
            tail = len(settled)
            while tail > 0 and settled[tail - 1].small:
                tail -= 1
            small = settled[tail:]
            group = self._next_group(small, final=final)
            if group is None:
                return
            first = tail + small.index(group[0])
            merged = self._merge(group)
            if merged is None:
                return
            self._files[first : first + len(group)] = [merged]
            self._synced -= len(group) - 1

    @staticmethod
    def _next_group(small: list[StepFile], *, final: bool) -> list[StepFile] | None:
        if final:
            group: list[StepFile] = []
            for file in small:
                rows, size = sum(f.rows for f in group) + file.rows, sum(f.size for f in group) + file.size
                if group and (rows > TARGET_ROWS or size > TARGET_BYTES):
                    if len(group) > 1:
                        return group
                    group = []
                group.append(file)
            return group if len(group) > 1 else None
        if len(small) < MERGE_FANIN:
            return None
        last = small[-MERGE_FANIN:]
        classes = {_size_class(f.rows) for f in last}
        return last if len(classes) == 1 or len(small) > MAX_SMALL_FILES else None

    def _merge(self, group: list[StepFile]) -> StepFile | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = group[0].path
        try:
            tables = [pq.read_table(file.path) for file in group]
            if len({tuple(table.column_names) for table in tables}) > 1:
                return None  # rows with other columns would read back with extra None values
            self._write(pa.concat_tables(tables, promote_options="default"), target, crash_point=False)
        except (OSError, pa.ArrowException) as exc:
            log.warning("%s: files not merged (%s); they stay as they are", self.path, exc)
            target.with_name(target.name + ".tmp").unlink(missing_ok=True)
            return None
        faults.crash_if("mid_merge")
        for file in group[1:]:
            file.path.unlink()
        _fsync_dir(self.path)
        rows = sum(file.rows for file in group)
        return StepFile(group[0].start, rows, target.stat().st_size, target)

    def _cut(self, file: StepFile, keep: int) -> StepFile:
        """``file`` cut to its first ``keep`` rows (a merge took in rows never committed)."""
        import pyarrow.parquet as pq

        table = pq.read_table(file.path).slice(0, keep)
        self._write(table, file.path, crash_point=False)
        return StepFile(file.start, keep, file.path.stat().st_size, file.path)

    def _write(self, table: Any, final: Path, *, crash_point: bool) -> None:
        import pyarrow.parquet as pq

        temp = final.with_name(final.name + ".tmp")
        pq.write_table(table, temp)
        with temp.open("rb+") as handle:
            os.fsync(handle.fileno())
        if crash_point and faults.armed("mid_append"):
            faults.kill_now()
        os.replace(temp, final)


def _size_class(rows: int) -> int:
    """The power of ``MERGE_FANIN`` below ``rows``: files of one class are merged together."""
    size_class = 0
    while rows >= MERGE_FANIN:
        rows //= MERGE_FANIN
        size_class += 1
    return size_class


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
