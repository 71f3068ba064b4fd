"""``datamill ui [CACHE ...]``: a local web page to watch runs and read their rows."""

from __future__ import annotations

from pathlib import Path

import typer

from datamill.cli.app import app
from datamill.cli.boundary import DEBUG_HELP, guarded


@app.command("ui")
@guarded
def ui_command(
    caches: list[Path] = typer.Argument(
        None, metavar="[CACHE]...", help="Directories to search for pipelines; default: the current one."
    ),
    port: int = typer.Option(
        8765, "--port", min=0, max=65535, help="Port to serve on (0: a free one, printed)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; the default serves this machine only."
    ),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Serve a read-only web page of every pipeline under CACHE: progress, spend, rows, jobs.

    Reads state databases read-only and takes no lock: safe while runs are going.
    """
    try:
        from datamill.ui.web.app import serve
    except ImportError as exc:
        from datamill.errors import ConfigError

        raise ConfigError(
            f"datamill ui needs Starlette and uvicorn ({exc}): pip install 'datamill[ui]'"
        ) from None
    roots = caches or [Path.cwd()]
    for root in roots:
        if not root.is_dir():
            raise typer.BadParameter(f"{root} is not a directory", param_hint="CACHE")
    where = ", ".join(map(str, roots))
    serve(
        roots,
        host,
        port,
        announce=lambda url: typer.echo(f"datamill ui: {url} — pipelines under {where}; Ctrl-C stops"),
    )
