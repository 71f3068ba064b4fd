"""The ``datamill`` command: one Typer app; each command lives in its own module.

Command modules register themselves on ``app`` when imported; ``_COMMAND_MODULES`` lists them
so a new command is one new module plus one line here.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="datamill",
    help="Batched, resumable LLM data-generation pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from datamill import __version__

        typer.echo(f"datamill {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Batched, resumable LLM data-generation pipelines."""


_COMMAND_MODULES = [
    "datamill.cli.simulate",
    "datamill.cli.demo",
    "datamill.cli.run",
    "datamill.cli.status",
    "datamill.cli.show",
    "datamill.cli.export",
    "datamill.cli.estimate",
    "datamill.cli.jobs",
    "datamill.cli.ui",
]


def _register_commands() -> None:
    for module in _COMMAND_MODULES:
        importlib.import_module(module)


def main() -> None:
    """Console-script entry point; messages from here on name command-line flags."""
    from datamill.errors import speak_to_cli

    speak_to_cli()
    _register_commands()
    app()
