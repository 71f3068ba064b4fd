"""``datamill simulate``: serve the provider simulator in the foreground.

Its flags come from ``datamill.simulator.knob_flags`` (one per ``SimulatorConfig`` field), so the
command forwards its arguments there instead of declaring every knob a second time;
``datamill simulate --help`` prints that parser's help.
"""

from __future__ import annotations

import typer

from datamill.cli.app import app

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command("simulate", context_settings=_PASS_THROUGH, add_help_option=False)
def simulate(ctx: typer.Context) -> None:
    """Serve a simulated OpenAI/Anthropic provider on 127.0.0.1 (see --help for the knobs)."""
    from datamill.simulator.entry import serve_command_line

    code = serve_command_line(
        ctx.args,
        "datamill simulate",
        say=typer.echo,
        complain=lambda line: typer.echo(line, err=True),
    )
    if code:
        raise typer.Exit(code)
