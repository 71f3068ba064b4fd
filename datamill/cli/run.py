"""``datamill run PIPELINE.py[:ClassName]``: compile and run a pipeline file, with progress."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded
from datamill.cli.loading import PIPELINE_METAVAR

log = logging.getLogger("datamill")

BLOCK_ATTRIBUTE = "offline_batch_generation_block_until_done"


@app.command("run")
@guarded
def run_command(
    pipeline: str = typer.Argument(
        ...,
        metavar=PIPELINE_METAVAR,
        help="A Python file defining one BatchedPipelineABC subclass (or name it after a colon).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", min=1, help="Rows per committed batch (default: forward()'s, 64)."
    ),
    resume_step: int | None = typer.Option(
        None, "--resume-step", min=0, help="Rerun from step K (from 0), keeping the steps before it."
    ),
    fresh: bool = typer.Option(
        False,
        "--fresh",
        help="Start over: rewind every step and recompute. Cached responses are reused, "
        "so no request is paid twice. If the state database is missing or damaged, the old step "
        "files are first moved into a timestamped folder in the cache directory.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --fresh."),
    block_until_done: float | None = typer.Option(
        None,
        "--block-until-done",
        metavar="SECONDS",
        min=0,
        help="Wait for offline batch jobs, polling every SECONDS, instead of exiting with code 75.",
    ),
    api_url: str | None = typer.Option(
        None,
        "--api-url",
        metavar="URL",
        help="Send every model call of the pipeline to this endpoint instead.",
    ),
    model: str | None = typer.Option(
        None, "--model", metavar="NAME", help="Use this model for every model call of the pipeline instead."
    ),
    max_cost: float | None = typer.Option(
        None,
        "--max-cost",
        metavar="USD",
        min=0,
        help="Stop once the cache has recorded this much spend (all runs together), after "
        "committing the batches in flight.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display and no summary."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object instead of a table."
    ),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Run a pipeline to the end, resuming where the last run stopped.

    Exit codes: 0 done; 1 rows failed or an error; 2 usage; 75 offline jobs still pending
    (rerun later to collect them); 130 interrupted. The log is written to {prefix}.log in the
    cache directory.
    """
    from datamill.cli.loading import load_pipeline, pipeline_storage

    if fresh and resume_step is not None:
        raise typer.BadParameter("--fresh reruns every step; leave out --resume-step", param_hint="--fresh")
    instance = load_pipeline(pipeline)
    instance.compile()
    if block_until_done is not None:
        _set_block_until_done(instance, block_until_done)
    if api_url is not None or model is not None:
        _override_servings(instance, api_url, model)
    if fresh and not yes:
        _confirm_fresh()
    options: dict[str, Any] = {"resume_step": resume_step, "resume_from_last": False if fresh else None}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if max_cost is not None:
        options["max_cost_usd"] = max_cost
    run_with_progress(
        instance, pipeline_storage(instance).log_path, quiet=quiet, options=options, as_json=as_json
    )


def run_with_progress(
    instance: Any, log_path: Path, *, quiet: bool, options: dict[str, Any], as_json: bool = False
) -> None:
    """Run ``instance.forward(**options)`` with the live display (or log lines), the run log
    in the cache directory, and the summary table at the end."""
    from datamill.cli.consoles import stderr_console, stdout_console
    from datamill.cli.runlog import FILE_ONLY, run_logging
    from datamill.errors import OfflineBatchGenerationNotFinished, RowsFailedError
    from datamill.ui.live import LiveProgress
    from datamill.ui.progress import TrackingProgress
    from datamill.ui.tables import summary_table

    console = stderr_console()
    live = console.is_terminal and not console.is_dumb_terminal and not quiet
    with run_logging(log_path, console, quiet=quiet, live=live):
        sink = LiveProgress(console) if live else TrackingProgress()
        summary = None
        try:
            with sink if isinstance(sink, LiveProgress) else contextlib.nullcontext():
                summary = instance.forward(progress=sink, **options)
        except RowsFailedError as exc:
            summary = exc.summary
            raise
        except OfflineBatchGenerationNotFinished as exc:
            log.info("waiting for offline batch jobs: %s", exc, extra=FILE_ONLY)
            raise
        except BaseException as exc:
            log.error("run stopped: %s: %s", type(exc).__name__, exc, extra=FILE_ONLY)
            raise
        finally:
            if summary is not None and as_json:
                typer.echo(json.dumps(summary.to_dict(), default=str))
            elif summary is not None and not quiet:
                out = stdout_console()
                out.print(summary_table(summary, width=out.width))


def _servings(instance: Any, attribute: str) -> list[Any]:
    """The servings the pipeline or its operators hold that have ``attribute``."""
    holders = list(vars(instance).values())
    found = {
        id(value): value
        for value in [*holders, *(getattr(h, "llm_serving", None) for h in holders)]
        if value is not None and hasattr(value, attribute)
    }
    return list(found.values())


def _override_servings(instance: Any, api_url: str | None, model: str | None) -> None:
    """Point every API serving at ``api_url`` and/or ``model`` (before fingerprints are taken,
    so a changed model recomputes the steps that use it)."""
    from datamill.serving.anthropic import messages_url
    from datamill.serving.openai_compat import chat_completions_url
    from datamill.serving.pricing import resolve_price

    endpoint = {"openai": chat_completions_url, "anthropic": messages_url}
    servings = _servings(instance, "api_url")
    if not servings:
        log.warning("--api-url/--model have no effect: no serving of this pipeline calls an HTTP API")
    for serving in servings:
        if api_url is not None:
            serving.api_url = endpoint.get(serving.provider, str)(api_url)
        if model is not None:
            serving.model_name = model
            serving.price = resolve_price(model, None)  # a price given for the old model does not apply


def _set_block_until_done(instance: Any, seconds: float) -> None:
    """Set the offline polling interval on every serving the pipeline or its operators hold."""
    servings = _servings(instance, BLOCK_ATTRIBUTE)
    for serving in servings:
        setattr(serving, BLOCK_ATTRIBUTE, seconds)
    if not any(getattr(s, "use_offline_batch_generation", False) for s in servings):
        log.warning("--block-until-done has no effect: no serving of this pipeline runs offline batches")


def _confirm_fresh() -> None:
    question = (
        "--fresh rewinds every step and recomputes it (cached responses are reused, nothing is "
        "paid twice). Continue?"
    )
    if not sys.stdin.isatty():
        raise typer.BadParameter("--fresh needs confirmation: add --yes", param_hint="--fresh")
    typer.confirm(question, abort=True, err=True)
