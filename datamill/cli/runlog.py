"""Where a run's log records go while a command runs it.

Every record of the ``datamill`` logger goes to ``{prefix}.log`` in the cache directory, at
INFO. On the console: nothing but warnings with ``--quiet``; on a terminal, INFO records other
than progress lines (the live display shows progress); elsewhere (a pipe, a CI log) every INFO
record, progress lines included, one per line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(asctime)s %(message)s"
FILE_ONLY = {"file_only": True}
"""``extra=`` for a record the console must not repeat (the error boundary prints it)."""


@contextmanager
def run_logging(log_path: Path, console: Any, *, quiet: bool, live: bool) -> Iterator[None]:
    """Attach the file and console handlers to the ``datamill`` logger for the block."""
    logger = logging.getLogger("datamill")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    console_handler = _console_handler(console, live)
    console_handler.addFilter(lambda record: not getattr(record, "file_only", False))
    console_handler.setLevel(logging.WARNING if quiet else logging.INFO)
    saved = (logger.level, logger.propagate)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(file_handler)
    logger.addHandler(console_handler)
    try:
        yield
    finally:
        logger.removeHandler(console_handler)
        logger.removeHandler(file_handler)
        file_handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _console_handler(console: Any, live: bool) -> logging.Handler:
    if live:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
        handler.addFilter(lambda record: not record.name.startswith("datamill.progress"))
        return handler
    handler = logging.StreamHandler(console.file)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, datefmt="%H:%M:%S"))
    return handler
