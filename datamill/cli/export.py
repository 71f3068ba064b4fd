"""``datamill export CACHE --format jsonl|csv|parquet|hf --out PATH``: a step's committed rows as
one file (or, for ``hf``, a ``datasets`` folder), written to a temporary name and renamed, so
PATH is never half-written.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded
from datamill.cli.show import STEP_HELP
from datamill.cli.status import PREFIX_HELP
from datamill.errors import ConfigError

if TYPE_CHECKING:
    from datamill.core.rowfiles import Row

EXPORT_FORMATS = ("jsonl", "csv", "parquet", "hf")
CHUNK_ROWS = 10_000


@app.command("export")
@guarded
def export_command(
    cache: Path = typer.Argument(..., metavar="CACHE", help="The pipeline's cache_path directory."),
    out: Path = typer.Option(..., "--out", "-o", help="The file (for --format hf, the folder) to write."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="jsonl, csv, parquet, or hf (a folder for datasets.load_from_disk); default: from --out's extension.",
    ),
    step: int = typer.Option(-1, "--step", "-s", help=STEP_HELP),
    prefix: str | None = typer.Option(None, "--prefix", help=PREFIX_HELP),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Write the committed rows of a step (the last by default) to one file."""
    from datamill.cli.cachedir import committed_rows, locate_cache, resolve_step
    from datamill.core.rowfiles import detect_format

    if fmt is None and out.suffix.lower() == ".json":
        raise typer.BadParameter(
            f"{out.name}: export writes JSON Lines (one object per line), not a .json array; "
            "name the file .jsonl, or pass --format jsonl to write JSON Lines under this name",
            param_hint="--out",
        )
    if fmt is None:
        try:
            fmt = detect_format(out)
        except ConfigError:
            raise typer.BadParameter(
                "give --format (jsonl, csv, parquet or hf)", param_hint="--format"
            ) from None
    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(EXPORT_FORMATS)}", param_hint="--format")
    found = locate_cache(cache, prefix)
    state = found.open_state()
    try:
        index = resolve_step(state, step)
        done = (state.load_step(index) or {}).get("status") == "done"
        if fmt == "hf":
            from datamill.cli.export_hf import export_hf

            count = export_hf(found, state, index, out)
        else:
            temp = out.with_name(out.name + ".tmp")
            try:
                count = _write(committed_rows(found, state, index), temp, fmt)
                temp.replace(out)
            finally:
                temp.unlink(missing_ok=True)
    finally:
        state.close()
    note = "" if done else " (the step is not complete: only its committed rows so far)"
    typer.echo(f"exported {count} row(s) of step {index} to {out}{note}", err=True)


def _write(rows: Iterator[Row], path: Path, fmt: str) -> int:
    if fmt == "parquet":
        return _write_parquet(rows, path)
    from datamill.core.rowfiles import open_writer

    count = 0
    writer = open_writer(path, fmt, 0)
    try:
        for chunk in _chunks(rows):
            writer.append(chunk)
            count += len(chunk)
        writer.sync()
    finally:
        writer.close()
    return count


def _write_parquet(rows: Iterator[Row], path: Path) -> int:
    """One Parquet file; its schema is that of the first chunk of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    count = 0
    writer = None
    try:
        for chunk in _chunks(rows):
            try:
                table = pa.Table.from_pylist(chunk, schema=writer.schema if writer else None)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ConfigError(
                    f"rows change type from one to the next ({exc}); export them with --format jsonl"
                ) from None
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            elif any(key not in writer.schema.names for row in chunk for key in row):
                raise ConfigError("rows add columns after the first ones; export them with --format jsonl")
            writer.write_table(table)
            count += len(chunk)
        if writer is None:
            pq.write_table(pa.table({}), path)
    finally:
        if writer is not None:
            writer.close()
    return count


def _chunks(rows: Iterator[Row]) -> Iterator[list[Row]]:
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        yield chunk
