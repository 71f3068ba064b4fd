"""``datamill estimate PIPELINE.py``: what the rest of a run would send and may cost, before
sending anything (``pipeline.estimate()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded
from datamill.cli.loading import PIPELINE_METAVAR

if TYPE_CHECKING:
    from rich.table import Table

    from datamill.pipeline.estimate import PipelineEstimate


@app.command("estimate")
@guarded
def estimate_command(
    pipeline: str = typer.Argument(..., metavar=PIPELINE_METAVAR, help="The pipeline file, as for run."),
    completion_tokens: tuple[int, int] | None = typer.Option(
        None,
        "--completion-tokens",
        metavar="LOW HIGH",
        help="Completion tokens assumed per sample (default: observed in the cache, else as long as "
        "the prompt's last user message; range 64 to max_tokens, or 1024).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as one JSON object."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Estimate the tokens and cost (expected, and low–high) of what is left to run; sends nothing."""
    from datamill.cli.loading import load_pipeline

    estimate = load_pipeline(pipeline).estimate(completion_tokens=completion_tokens)
    if as_json:
        import json

        typer.echo(json.dumps(estimate.to_dict()))
        return
    from datamill.cli.consoles import stdout_console

    stdout_console().print(estimate_table(estimate))


def estimate_table(estimate: PipelineEstimate) -> Table:
    from rich.table import Table

    from datamill.ui.progress import format_cost

    def cost_range(low: float | None, high: float | None) -> str:
        return f"{format_cost(low)} – {format_cost(high)}"

    table = Table(title="estimate of what is left to run", title_justify="left")
    table.add_column("step")
    table.add_column("model")
    for name in ("rows", "requests", "paid (cached)", "prompt tokens", "completion tokens", "cost", "range"):
        table.add_column(name, justify="right")
    for step in estimate.steps:
        table.add_row(
            f"{step.index} {step.name}" + ("" if step.exact else " ~"),
            step.model + (" (batch)" if step.offline and step.model else ""),
            str(step.rows),
            str(step.requests),
            str(step.cached_requests),
            f"{step.prompt_tokens:,}",
            f"{step.completion_tokens:,}" + (f" ({step.completion_basis})" if step.completion_basis else ""),
            format_cost(step.cost_usd),
            cost_range(step.cost_low_usd, step.cost_high_usd),
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        str(estimate.requests),
        str(estimate.cached_requests),
        f"{estimate.prompt_tokens:,}",
        f"{estimate.completion_tokens:,}",
        format_cost(estimate.cost_usd),
        cost_range(estimate.cost_low_usd, estimate.cost_high_usd),
    )
    notes = estimate.notes()
    if notes:
        table.caption = "\n".join(dict.fromkeys(notes))
        table.caption_justify = "left"
    return table
