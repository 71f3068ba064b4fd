"""What ``forward()`` shows when called from Python: the live display, the resume point,
recompute reasons, offline job progress and the summary, on a terminal or in a notebook.

``ConsoleProgress`` is the sink the ``datamill`` package registers as ``forward()``'s default
(``datamill.pipeline.progress.set_default_progress``). For the length of a run it shows the
``datamill`` loggers' INFO messages on stderr — "step 1 will be recomputed: ...", "resuming at
row N", the offline jobs' progress while blocking — unless the program has set up logging
that already shows them. On a terminal or in a notebook (with ipywidgets) a live display
redraws the steps; elsewhere (a pipe, a file, a notebook without ipywidgets) the progress
comes as a line every few seconds. Setting
``logging.getLogger("datamill")`` above INFO, or ``forward(progress=False)``, quiets it all.
"""

from __future__ import annotations

import importlib.util
import logging
import math

from rich.console import Console

from datamill.pipeline.summary import RunSummary, StepSummary
from datamill.ui.live import LiveDisplay, render_steps
from datamill.ui.progress import TrackingProgress
from datamill.ui.tables import summary_table

DATAMILL_LOGGER = "datamill"


class ConsoleProgress(TrackingProgress):
    """The default display of ``forward()`` (see the module docstring)."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)
        logger = logging.getLogger(DATAMILL_LOGGER)
        self.quiet = logger.level > logging.INFO
        self.interactive = _can_redraw(self.console)
        self._live: LiveDisplay | None = None
        self._handler: _ConsoleHandler | None = None
        self._saved: tuple[int, bool] | None = None
        if self.interactive:
            self.interval = math.inf  # the live display shows what the periodic lines would
        if not self.quiet and not _already_shown(logger):
            self._handler = _ConsoleHandler(self.console, logger.level)
            self._saved = (logger.level, logger.propagate)
            logger.addHandler(self._handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False

    def step_started(self, step: StepSummary, total_rows: int | None, done_rows: int) -> None:
        super().step_started(step, total_rows, done_rows)
        if self.quiet or not self.interactive:
            return
        if self._live is None:
            self._live = LiveDisplay(self.console, lambda: render_steps(self.steps.values()))
            self._live.start()

    def run_finished(self, summary: RunSummary) -> None:
        super().run_finished(summary)
        self._close()
        if not self.quiet:
            self.console.print(summary_table(summary, width=self.console.width))

    def run_stopped(self, error: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._handler is not None:
            logger = logging.getLogger(DATAMILL_LOGGER)
            logger.removeHandler(self._handler)
            assert self._saved is not None
            logger.setLevel(self._saved[0])
            logger.propagate = self._saved[1]
            self._handler = None


def _can_redraw(console: Console) -> bool:
    """A terminal, or a notebook with ipywidgets (rich redraws a notebook cell through it)."""
    if console.is_jupyter:
        return importlib.util.find_spec("ipywidgets") is not None
    return console.is_terminal and not console.is_dumb_terminal


def _already_shown(logger: logging.Logger) -> bool:
    """Whether the program's own logging already shows datamill's INFO messages somewhere."""
    if not logger.isEnabledFor(logging.INFO):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


class _ConsoleHandler(logging.Handler):
    """datamill's INFO messages as plain lines on the console (above a live display).

    While it is attached the ``datamill`` logger is set to INFO and stops propagating; every
    record that would have been emitted without it (warnings, errors, or anything a program
    enabled itself) still goes on to the root logger's handlers, unchanged.
    """

    def __init__(self, console: Console, saved_level: int) -> None:
        super().__init__(logging.INFO)
        self.console = console
        self.saved_level = saved_level

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= self._level_without_display(record.name):
            logging.getLogger().handle(record)
        if record.levelno >= logging.WARNING or getattr(record, "file_only", False):
            return
        try:
            self.console.print(record.getMessage(), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)

    def _level_without_display(self, name: str) -> int:
        """The effective level the record's logger had before the display set datamill's."""
        current: logging.Logger | None = logging.getLogger(name)
        while current is not None:
            level = self.saved_level if current.name == DATAMILL_LOGGER else current.level
            if level:
                return level
            current = current.parent
        return logging.WARNING
