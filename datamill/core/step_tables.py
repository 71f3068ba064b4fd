"""A step's committed rows as one Arrow table, read by Arrow from the step file itself.

JSONL goes through pyarrow's JSON reader over the committed bytes (memory-mapped), CSV through
its CSV reader with every column kept as a string (as ``rows()`` reads them), a Parquet step
folder by its part files. Rows are never built as Python objects, so a million-row step becomes
a table at Arrow speed. Only committed rows are read: bytes or parts that a running or killed
process appended without committing are not part of the result.

``to_dataset`` wraps the table as a ``datasets.Dataset`` (the ``hf`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datamill.core.state import StepPosition
from datamill.errors import ConfigError, InputFileError

#: Bytes of JSON lines pyarrow parses per block; a row longer than this is retried in one block.
_BLOCK = 8 << 20


def committed_table(path: Path, fmt: str, position: StepPosition) -> Any:
    """The first ``position.out_rows`` rows of step file ``path`` as a ``pyarrow.Table``."""
    import pyarrow as pa

    if position.out_rows <= 0:
        return pa.table({})
    if not path.exists():
        raise InputFileError(
            f"{path} does not exist, yet the state database records {position.out_rows} rows in it"
        )
    try:
        if fmt == "parquet":
            table = _parquet_table(path)
        elif fmt == "csv":
            table = _csv_table(path, position.out_position)
        else:
            table = _jsonl_table(path, position.out_position)
    except pa.ArrowInvalid as exc:
        raise ConfigError(
            f"{path}: its rows do not fit one Arrow table ({exc}); a column likely holds values of "
            "different types; read it with rows() or export it with --format jsonl"
        ) from None
    return table.slice(0, position.out_rows)


def to_dataset(table: Any) -> Any:
    """A ``datasets.Dataset`` over ``table`` (in memory, no copy into Python objects)."""
    from datamill.core.hf_inputs import require_datasets

    datasets = require_datasets("to_hf_dataset() and export --format hf")
    return datasets.Dataset(datasets.table.InMemoryTable(table))


def _jsonl_table(path: Path, end: int) -> Any:
    import pyarrow as pa
    import pyarrow.json as pajson

    with pa.memory_map(str(path)) as mapped:
        committed = mapped.read_buffer(end)
        return _read_in_blocks(
            lambda block: pajson.read_json(
                pa.BufferReader(committed), read_options=pajson.ReadOptions(block_size=block)
            ),
            end,
        )


def _csv_table(path: Path, end: int) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from datamill.core.rowfiles import CsvReader

    header = CsvReader(path).header()
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    with pa.memory_map(str(path)) as mapped:
        committed = mapped.read_buffer(end)
        return _read_in_blocks(
            lambda block: pacsv.read_csv(
                pa.BufferReader(committed),
                read_options=pacsv.ReadOptions(block_size=block),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=convert,
            ),
            end,
        )


def _read_in_blocks(read: Callable[[int], Any], size: int) -> Any:
    """``read(block_size)``, again with one block for everything when a row is longer than a block."""
    import pyarrow as pa

    try:
        return read(_BLOCK)
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc):
            raise
        return read(max(size, 1))


def _parquet_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datamill.core.parquet_steps import step_files

    # The step's chain of files in row order; a stopped merge's leftovers are not rows.
    parts = [file.path for file in step_files(path)[0]] if path.is_dir() else [path]
    tables = [pq.read_table(part) for part in parts]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")
