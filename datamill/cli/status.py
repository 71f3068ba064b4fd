"""``datamill status CACHE``: where each step of a cache stands, readable while a run is going."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded

if TYPE_CHECKING:
    from datamill.cli.cachedir import CacheStatus

PREFIX_HELP = "file_name_prefix of the cache; needed only when CACHE holds several."


@app.command("status")
@guarded
def status_command(
    cache: Path = typer.Argument(..., metavar="CACHE", help="The pipeline's cache_path directory."),
    prefix: str | None = typer.Option(None, "--prefix", help=PREFIX_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the status as one JSON object."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Show where each step of a cache stands; safe while a run is going.

    Per step: state, rows committed / total, failed rows, tokens, cost, throughput, and
    pending offline jobs. Reads the state database read-only and takes no lock. Steps are
    numbered from 0, as in forward(resume_step=k); step k writes {prefix}_step{k+1}.
    """
    from datamill.cli.cachedir import locate_cache, read_status, status_document

    found = locate_cache(cache, prefix)
    if as_json:
        import json

        typer.echo(json.dumps(status_document(found), default=str))
        return
    _print_status(read_status(found))


def _print_status(status: CacheStatus) -> None:
    import time

    from rich import box
    from rich.table import Table

    from datamill.cli.consoles import stdout_console
    from datamill.pipeline.summary import describe_status
    from datamill.ui.progress import format_cost, format_duration
    from datamill.ui.tables import WIDE_COLUMNS, format_drops, jobs_table

    console = stdout_console()
    wide = console.width >= WIDE_COLUMNS
    run = status.run
    if run is None:
        header = "no run recorded yet"
    else:
        end = run["finished_at"] or time.time()
        header = (
            f"run #{run['id']} {describe_status(run['status'])} (PID {run['pid']}), "
            f"{format_duration(end - run['started_at'])}"
        )
        if run["status"] == "running":
            header += " so far"
    console.print(
        f"cache {status.cache}, prefix {status.prefix}: {header}; {status.cached_responses:,} cached responses",
        markup=False,
    )
    table = Table(title_justify="left", box=None if not wide else box.HEAVY_HEAD)
    table.add_column("step", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("state", no_wrap=True)
    names = ("rows", "out", "failed", "dropped", "tokens", "last run", "cost", "rows/s")
    shown = names if wide else ("rows", "out", "failed", "last run", "cost", "rows/s")
    for name in shown:
        table.add_column(name, justify="right", no_wrap=True)
    if wide:
        table.add_column("file")
    for step in status.steps:
        total = "?" if step.rows_total is None else f"{step.rows_total:,}"
        cells = {
            "rows": f"{step.rows_done:,}/{total}",
            "out": f"{step.rows_out:,}",
            "failed": f"[red]{step.rows_failed:,}[/red]" if step.rows_failed else "0",
            "dropped": f"{step.rows_dropped:,}",
            "tokens": f"{step.prompt_tokens + step.completion_tokens:,}",
            "last run": format_cost(step.last_run_spend["cost_usd"]),
            "cost": format_cost(step.cost_usd),
            "rows/s": "-" if step.rows_per_second is None else f"{step.rows_per_second:.1f}",
        }
        table.add_row(
            f"{step.index} {step.name}",
            step.state,
            *(cells[n] for n in shown),
            *([step.file] if wide else []),
        )
    spend = status.spend
    totals = {
        "rows": "",
        "out": f"{sum(step.rows_out for step in status.steps):,}",
        "failed": f"{sum(step.rows_failed for step in status.steps):,}",
        "dropped": f"{sum(step.rows_dropped for step in status.steps):,}",
        "tokens": f"{spend['prompt_tokens'] + spend['completion_tokens']:,}",
        "last run": format_cost(spend["last_run"]["cost_usd"]),
        "cost": format_cost(spend["cost_usd"]),
        "rows/s": "",
    }
    table.add_row("total", "", *(totals[n] for n in shown), *([""] if wide else []), style="bold")
    console.print(table)
    for step in status.steps:
        if step.drop_reasons:
            console.print(f"step {step.index} dropped {format_drops(step.drop_reasons)}", markup=False)
    if status.jobs:
        console.print(jobs_table(status.jobs, title="pending offline batch jobs"))
    failed = sum(step.rows_failed for step in status.steps)
    if failed:
        console.print(
            f"{failed} failed row(s) are recorded; rerunning the pipeline (datamill run) retries them."
        )
