"""The two rich consoles of the CLI: results on stdout, progress and errors on stderr.

Off a terminal (a pipe, a CI log) rich would wrap tables at 80 columns; they get a wide line
instead unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import os
from typing import Any

PIPE_WIDTH = 160


def stdout_console() -> Any:
    return _console(stderr=False)


def stderr_console() -> Any:
    return _console(stderr=True)


def _console(*, stderr: bool) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, highlight=False, width=PIPE_WIDTH)
    return console
