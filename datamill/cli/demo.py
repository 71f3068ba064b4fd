"""``datamill demo``: the translation pipeline over the bundled sample, against the simulator.

With no ``--api-url`` it starts the provider simulator on a free loopback port, so the demo
needs no API key and sends nothing off the machine. Rerunning continues where it stopped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded


@contextlib.contextmanager
def _endpoint(api_url: str | None, latency: float) -> Iterator[str]:
    if api_url:
        yield api_url
        return
    from datamill.simulator.server import run_simulator_process

    with run_simulator_process(latency_mean=latency, latency_jitter=latency / 2) as simulator:
        yield simulator.openai_base + "/chat/completions"


@app.command()
@guarded
def demo(
    cache: str = typer.Option("./demo_cache", help="Cache directory for step files and state."),
    batch_size: int = typer.Option(16, min=1, help="Rows per committed batch."),
    api_url: str = typer.Option(
        None,
        help="A real OpenAI-compatible chat-completions URL (key from OPENAI_API_KEY); default: simulator.",
    ),
    model: str = typer.Option("gpt-4o-mini", help="Model name sent to the endpoint."),
    latency: float = typer.Option(
        0.05, min=0, help="Simulated provider latency in seconds (simulator only)."
    ),
    fresh: bool = typer.Option(False, help="Start over instead of resuming (cached responses are reused)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display and no summary."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object instead of a table."
    ),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Translate 200 bundled sentences into Chinese, French and German, resumably.

    The pipeline is datamill/demo/translate.py; with --api-url it runs on a real endpoint.
    """
    from datamill.cli.run import run_with_progress
    from datamill.demo.translate import TranslatePipeline

    with _endpoint(api_url, latency) as url:
        typer.echo(f"datamill demo: endpoint {url}, cache {cache}", err=True)
        pipeline = TranslatePipeline(api_url=url, model_name=model, cache_path=cache)
        pipeline.compile()
        options = {"batch_size": batch_size, "resume_from_last": not fresh}
        run_with_progress(pipeline, pipeline.storage.log_path, quiet=quiet, options=options, as_json=as_json)
    first = next(iter(pipeline.rows()), None)
    if first is not None and not quiet and not as_json:
        typer.echo("first row: " + json.dumps(first, ensure_ascii=False))
