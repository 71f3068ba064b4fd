"""Row-indexed inputs: a folder of Parquet files, a pandas DataFrame, a list of dicts.

The position after a row is its 1-based row index, so a resume jumps straight to the next row
(Parquet by file and row-group metadata, a DataFrame or list by index). Rows are handed out a
chunk at a time, converted from Arrow or pandas only as they are read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from datamill.core.fingerprint import file_identity
from datamill.core.inputs import InputSource, Row
from datamill.errors import ConfigError, InputFileError

CHUNK_ROWS = 1024
_HASH_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def hash_rows(rows: Iterator[Any]) -> str:
    """A content hash of rows, independent of key order; values JSON can't hold hash by ``str``."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(orjson.dumps(row, default=str, option=_HASH_OPTIONS))
        digest.update(b"\n")
    return digest.hexdigest()


class ParquetFolderSource(InputSource):
    """Every ``*.parquet`` file under a folder, in path order, as one sequence of rows."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path

    def files(self) -> list[Path]:
        files = sorted(p for p in self.path.rglob("*.parquet") if p.is_file())
        if not files:
            raise InputFileError(
                f"{self.path} is a folder with no .parquet file in it; an input folder must hold Parquet "
                "files or a dataset written by Dataset.save_to_disk"
            )
        return files

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        index = 0
        for file in self.files():
            parquet = _open_parquet(file)
            for group in range(parquet.num_row_groups):
                group_rows = parquet.metadata.row_group(group).num_rows
                if index + group_rows <= position:
                    index += group_rows
                    continue
                for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, row_groups=[group]):
                    skip = max(0, position - index)
                    if skip >= batch.num_rows:
                        index += batch.num_rows
                        continue
                    for offset, row in enumerate(batch.slice(skip).to_pylist()):
                        yield row, index + skip + offset + 1
                    index += batch.num_rows

    def count(self) -> int | None:
        return sum(_open_parquet(file).metadata.num_rows for file in self.files())

    def identity(self) -> dict[str, Any]:
        return {
            "parquet_files": [
                {"name": file.relative_to(self.path).as_posix(), **file_identity(file)}
                for file in self.files()
            ]
        }

    def exists(self) -> bool:
        return self.path.is_dir()


def _open_parquet(file: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputFileError(f"{file}: not a readable Parquet file ({exc})") from None


class RowListSource(InputSource):
    """A list of dicts given in Python (what ``LoadDataFromDicts``-style inputs hand over)."""

    def __init__(self, rows: list[Any]) -> None:
        super().__init__(f"<list of {len(rows)} rows>")
        self.rows = rows

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        for index in range(position, len(self.rows)):
            row = self.rows[index]
            if not isinstance(row, dict):
                raise ConfigError(
                    f"first_entry_file_name: item {index} of the list is a {type(row).__name__}, not a dict; "
                    "give one dict per row"
                )
            yield row, index + 1

    def count(self) -> int | None:
        return len(self.rows)

    def identity(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "sha256": hash_rows(iter(self.rows))}


class DataFrameSource(InputSource):
    """A pandas DataFrame; its index is not a column (``df.reset_index()`` keeps it)."""

    def __init__(self, frame: Any) -> None:
        super().__init__(f"<DataFrame of {len(frame)} rows>")
        duplicated = [str(name) for name in frame.columns[frame.columns.duplicated()]]
        if duplicated:
            raise ConfigError(f"the input DataFrame has duplicate column(s) {duplicated}; rename them")
        self.frame = frame

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        for start in range(position, len(self.frame), CHUNK_ROWS):
            records = self.frame.iloc[start : start + CHUNK_ROWS].to_dict("records")
            for offset, row in enumerate(records):
                yield row, start + offset + 1

    def count(self) -> int | None:
        return len(self.frame)

    def identity(self) -> dict[str, Any]:
        """Columns, dtypes and a hash of the values (pandas' vectorised row hash when the
        values allow it, else the rows' JSON)."""
        import pandas as pd

        try:
            hashed = pd.util.hash_pandas_object(self.frame, index=False).to_numpy()
            content = hashlib.sha256(hashed.tobytes()).hexdigest()
        except TypeError:  # unhashable cells, e.g. lists
            content = hash_rows(row for row, _ in self.iter_from(0))
        return {
            "dataframe_columns": [str(name) for name in self.frame.columns],
            "dtypes": [str(dtype) for dtype in self.frame.dtypes],
            "rows": len(self.frame),
            "sha256": content,
        }
