"""Rich tables for what the CLI prints: the run summary, offline jobs, rows of a step."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text

from datamill.pipeline.summary import RunSummary
from datamill.ui.progress import format_cost


def summary_table(summary: RunSummary) -> Table:
    """The final summary of a run: one line per step."""
    title = f"run {summary.status} in {summary.seconds:.1f}s"
    if summary.already_complete:
        title += " (already complete: nothing was sent)"
    table = Table(title=title, title_justify="left")
    table.add_column("step")
    table.add_column("model")
    for name in ("in", "out", "failed", "dropped", "sent", "cached", "retries", "tokens", "cost", "rows/s"):
        table.add_column(name, justify="right")
    for step in summary.steps:
        table.add_row(
            f"{step.index} {step.name}",
            step.model or "-",
            str(step.rows_in),
            str(step.rows_out),
            f"[red]{step.rows_failed}[/red]" if step.rows_failed else "0",
            str(step.rows_dropped),
            str(step.requests_sent),
            str(step.cache_hits),
            str(step.retries),
            f"{step.prompt_tokens + step.completion_tokens:,}",
            format_cost(step.cost_usd),
            f"{step.rows_per_second:.1f}",
        )
    if summary.output_path:
        table.caption = f"output: {summary.output_path}"
        table.caption_justify = "left"
    return table


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
