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
    """Console-script entry point."""
    _register_commands()
    app()
