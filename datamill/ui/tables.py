"""Rich tables for what the CLI prints: the run summary, offline jobs, rows of a step."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from datamill.pipeline.summary import RunSummary, describe_status
from datamill.ui.progress import format_cost

#: Below this console width the summary leaves out model, cached, retries and tokens.
WIDE_COLUMNS = 120


def summary_table(summary: RunSummary, width: int = WIDE_COLUMNS) -> Table:
    """The final summary of a run: one line per step and a total row, legible down to 80
    columns; ``cost`` is this run's, ``total`` every run's of the cache; drop reasons and the
    output file in its caption."""
    title = f"run {describe_status(summary.status)} in {summary.seconds:.1f}s"
    if summary.already_complete:
        title += " (already complete: nothing was sent)"
    wide = width >= WIDE_COLUMNS
    table = Table(title=title, title_justify="left", box=None if not wide else box.HEAVY_HEAD)
    table.add_column("step", overflow="ellipsis", no_wrap=True, max_width=24)
    if wide:
        table.add_column("model", overflow="ellipsis", no_wrap=True)
    names = (
        "in",
        "out",
        "failed",
        "sent",
        "cached",
        "tokens",
        "cost",
        "total",
        "rows/s",
    )
    shown = names if wide else ("in", "out", "failed", "sent", "cost", "total", "rows/s")
    for name in shown:
        table.add_column(
            name, justify="right", no_wrap=True, min_width=8 if name in ("cost", "total") else None
        )
    for step in summary.steps:
        cells = {
            "in": f"{step.rows_in:,}",
            "out": f"{step.rows_out:,}",
            "failed": f"[red]{step.rows_failed:,}[/red]" if step.rows_failed else "0",
            "sent": f"{step.requests_sent:,}",
            "cached": f"{step.cache_hits:,}",
            "tokens": f"{step.prompt_tokens + step.completion_tokens:,}",
            "cost": format_cost(step.cost_usd),
            "total": format_cost(step.total_cost_usd),
            "rows/s": f"{step.rows_per_second:.1f}",
        }
        model = [step.model or "-"] if wide else []
        table.add_row(f"{step.index} {step.name}", *model, *(cells[name] for name in shown))
    totals = dict.fromkeys(names, "")
    totals.update(
        failed=f"{summary.rows_failed:,}",
        sent=f"{summary.requests_sent:,}",
        tokens=f"{summary.prompt_tokens + summary.completion_tokens:,}",
        cost=format_cost(summary.cost_usd),
        total=format_cost(summary.total_cost_usd),
    )
    table.add_row("total", *([""] if wide else []), *(totals[name] for name in shown), style="bold")
    caption = [
        f"step {s.index} dropped {format_drops(s.drop_reasons)}" for s in summary.steps if s.drop_reasons
    ]
    if summary.output_path:
        caption.append(f"output: {summary.output_path}")
    if caption:
        table.caption = "\n".join(caption)
        table.caption_justify = "left"
    return table


def format_drops(reasons: dict[str, int]) -> str:
    """``12 rows: too short 10, duplicate 2``."""
    parts = ", ".join(f"{reason} {count:,}" for reason, count in sorted(reasons.items(), key=lambda i: -i[1]))
    return f"{sum(reasons.values()):,} rows: {parts}"


JOB_COLUMNS = (
    "step",
    "provider",
    "model",
    "job_id",
    "status",
    "state",
    "n_requests",
    "total",
    "completed",
    "failed",
)


def jobs_table(jobs: list[dict[str, Any]], title: str) -> Table:
    """Offline batch jobs, with the columns a person acts on (all of them if none is known)."""
    known = [column for column in JOB_COLUMNS if any(column in job for job in jobs)]
    if known:
        jobs = [{column: job.get(column) for column in known} for job in jobs]
    return records_table(jobs, title=title)


def records_table(records: Iterable[dict[str, Any]], title: str | None = None) -> Table:
    """Dicts as a table whose columns are the union of their keys, in first-seen order."""
    records = list(records)
    columns = list(dict.fromkeys(key for record in records for key in record))
    table = Table(title=title, title_justify="left")
    for column in columns:
        if column in ("job", "job_id"):  # an id is copied whole: never broken across lines
            table.add_column(str(column), no_wrap=True)
        else:
            table.add_column(str(column), overflow="fold")
    for record in records:
        table.add_row(*(Text(format_cell(record.get(column))) for column in columns))
    return table


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
