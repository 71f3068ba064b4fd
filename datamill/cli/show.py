"""``datamill show CACHE --step K -n N``: the first committed rows of a step."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded
from datamill.cli.status import PREFIX_HELP

STEP_HELP = "Step index from 0 (negative counts from the end); default: the last step."


@app.command("show")
@guarded
def show_command(
    cache: Path = typer.Argument(..., metavar="CACHE", help="The pipeline's cache_path directory."),
    step: int = typer.Option(-1, "--step", "-s", help=STEP_HELP),
    rows: int = typer.Option(10, "-n", "--rows", min=0, help="How many rows to print."),
    fmt: str | None = typer.Option(
        None, "--format", help="json (one object per line) or table; default: table on a terminal."
    ),
    as_json: bool = typer.Option(False, "--json", help="The same as --format json."),
    prefix: str | None = typer.Option(None, "--prefix", help=PREFIX_HELP),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Print the first committed rows of a step, as JSON lines or a table."""
    if as_json:
        fmt = "json"
    from datamill.cli.cachedir import committed_rows, locate_cache, resolve_step

    if fmt not in (None, "json", "table"):
        raise typer.BadParameter("use json or table", param_hint="--format")
    found = locate_cache(cache, prefix)
    state = found.open_state()
    try:
        index = resolve_step(state, step)
        selected = list(committed_rows(found, state, index, rows))
    finally:
        state.close()
    if fmt == "table" or (fmt is None and sys.stdout.isatty()):
        from datamill.cli.consoles import stdout_console
        from datamill.ui.tables import records_table

        stdout_console().print(records_table(selected, title=f"step {index}: first {len(selected)} row(s)"))
        return
    import json

    for row in selected:
        typer.echo(json.dumps(row, ensure_ascii=False, default=str))
