"""``datamill simulate``: serve the provider simulator in the foreground.

One option per ``SimulatorConfig`` field (``--latency-mean 0.01`` is the knob
``latency_mean``; optional knobs take ``none``; ``--models`` takes a comma-separated list), in
the same help style as every other command. The options are derived from the fields, so a new
knob needs no change here; values are checked by the knob's own coercion.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded
from datamill.simulator.config import SimulatorConfig, coerce_knob, knob_base_type
from datamill.simulator.knob_flags import DEFAULT_HOST, flag_name

KNOBS_PANEL = "Knobs"


def simulate_command(**options: Any) -> None:
    """Serve a simulated OpenAI/Anthropic provider (chat, embeddings, files, batches) over HTTP.

    Prints "datamill simulator listening on http://HOST:PORT" once it is ready and serves
    until Ctrl-C. Every knob can also be changed while it runs (POST /_sim/config).
    """
    from datamill.simulator.server import LISTENING_PREFIX, SimulatorStartError, serve_forever

    host, port = options.pop("host"), options.pop("port")
    options.pop("debug")
    knobs = {
        name: None if value.lower() in ("none", "null") else value
        for name, value in options.items()
        if value is not None
    }
    for name, value in knobs.items():
        try:
            coerce_knob(name, value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag_name(name)) from None
    try:
        config = SimulatorConfig().with_knobs(**knobs)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        serve_forever(config, host, port, on_ready=lambda url: typer.echo(LISTENING_PREFIX + url))
    except SimulatorStartError as exc:
        typer.echo(f"datamill simulate: {exc}", err=True)
        raise typer.Exit(1) from None


def _parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    found = [
        inspect.Parameter(
            "host",
            keyword,
            annotation=str,
            default=typer.Option(DEFAULT_HOST, "--host", help="Address to bind."),
        ),
        inspect.Parameter(
            "port",
            keyword,
            annotation=int,
            default=typer.Option(0, "--port", min=0, help="Port to bind; 0 picks a free one."),
        ),
        inspect.Parameter(
            "debug", keyword, annotation=bool, default=typer.Option(False, "--debug", help=DEBUG_HELP)
        ),
    ]
    for spec in dataclasses.fields(SimulatorConfig):
        base, optional = knob_base_type(spec.name)
        metavar = "LIST" if base is tuple else base.__name__.upper()
        default = ",".join(spec.default) if isinstance(spec.default, tuple) else spec.default
        help_text = spec.metadata.get("help", "") + (" (or none)" if optional else "")
        option = typer.Option(
            None,
            flag_name(spec.name),
            metavar=metavar,
            help=f"{help_text[:1].upper()}{help_text[1:]} [default: {'none' if default is None else default}]",
            rich_help_panel=KNOBS_PANEL,
            show_default=False,
        )
        found.append(inspect.Parameter(spec.name, keyword, annotation=str | None, default=option))
    return found


simulate_command.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
app.command("simulate")(guarded(simulate_command))
