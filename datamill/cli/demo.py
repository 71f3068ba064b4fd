"""``datamill demo``: the translation pipeline over the bundled sample, against the simulator.

With no ``--api-url`` it starts the provider simulator on a free loopback port, so the demo
needs no API key and sends nothing off the machine. Rerunning continues where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import typer

from datamill.cli.app import app


@contextlib.contextmanager
def _endpoint(api_url: str | None, latency: float) -> Iterator[str]:
    if api_url:
        yield api_url
        return
    from datamill.simulator.server import run_simulator_process

    with run_simulator_process(latency_mean=latency) as simulator:
        yield simulator.openai_base + "/chat/completions"


@app.command()
def demo(
    cache: str = typer.Option("./demo_cache", help="Cache directory for step files and state."),
    batch_size: int = typer.Option(16, help="Rows per committed batch."),
    api_url: str = typer.Option(
        None,
        help="A real OpenAI-compatible chat-completions URL (key from OPENAI_API_KEY); default: simulator.",
    ),
    model: str = typer.Option("gpt-4o-mini", help="Model name sent to the endpoint."),
    latency: float = typer.Option(0.05, help="Simulated provider latency in seconds (simulator only)."),
    fresh: bool = typer.Option(False, help="Start over instead of resuming (cached responses are reused)."),
) -> None:
    """Translate 200 bundled sentences into Chinese, French and German, resumably."""
    from datamill.demo.translate import TranslatePipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    with _endpoint(api_url, latency) as url:
        typer.echo(f"datamill demo: endpoint {url}, cache {cache}")
        pipeline = TranslatePipeline(api_url=url, model_name=model, cache_path=cache)
        pipeline.compile()
        summary = pipeline.forward(batch_size=batch_size, resume_from_last=not fresh)
    typer.echo(summary.format_text())
    first = next(iter(pipeline.rows()), None)
    if first is not None:
        typer.echo("first row: " + json.dumps(first, ensure_ascii=False))
    typer.echo(f"output: {summary.output_path}")
