"""Progress events from the engine, the sink that logs them, and how ``forward()`` picks one.

The engine calls a ``ProgressSink``; the CLI and ``forward()`` render a live display from the
same events. Library code never prints: the display is an interface-layer sink that the
``datamill`` package registers here (``set_default_progress``), so this layer never imports
it. ``forward(progress=None)`` uses the registered sink, ``progress=False`` only logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from datamill.pipeline.summary import RunSummary, StepSummary

log = logging.getLogger("datamill.progress")


class ProgressSink(Protocol):
    def step_started(self, step: StepSummary, total_rows: int | None, done_rows: int) -> None: ...

    def rows_committed(self, step: StepSummary, done_rows: int, dispatch: Any) -> None: ...

    def step_finished(self, step: StepSummary) -> None: ...

    def run_finished(self, summary: RunSummary) -> None: ...


_default_factory: Callable[[], ProgressSink] | None = None


def set_default_progress(factory: Callable[[], ProgressSink] | None) -> None:
    """Register what ``forward()`` shows by default (the ``datamill`` package registers its
    console display); None goes back to logging only."""
    global _default_factory
    _default_factory = factory


def choose_progress(progress: ProgressSink | bool | None) -> ProgressSink:
    """The sink of a run: the one given, the registered display (None, True), or logging (False)."""
    if progress is None or progress is True:
        return _default_factory() if _default_factory is not None else LoggingProgress()
    if progress is False:
        return LoggingProgress()
    return progress


def notify_stopped(progress: ProgressSink, error: BaseException) -> None:
    """Tell ``progress`` the run ended with ``error`` (sinks without ``run_stopped`` skip it)."""
    stopped = getattr(progress, "run_stopped", None)
    if stopped is not None:
        stopped(error)


class LoggingProgress:
    """Logs one line per step start and end, and one every ``interval`` seconds in between."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._last = 0.0
        self._total: int | None = None

    def step_started(self, step: StepSummary, total_rows: int | None, done_rows: int) -> None:
        self._total = total_rows
        self._last = time.monotonic()
        total = "?" if total_rows is None else f"{total_rows:,}"
        if done_rows:
            log.info("step %d (%s): resuming at row %s of %s", step.index, step.name, f"{done_rows:,}", total)
        else:
            log.info("step %d (%s): starting, %s rows", step.index, step.name, total)

    def rows_committed(self, step: StepSummary, done_rows: int, dispatch: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        log.info(
            "step %d (%s): %d/%s rows, %.0f rows/s, %d failed, %d in flight, %d retries",
            step.index,
            step.name,
            done_rows,
            self._total or "?",
            step.rows_per_second,
            step.rows_failed,
            getattr(dispatch, "in_flight", 0),
            getattr(dispatch, "retries", 0),
        )

    def step_finished(self, step: StepSummary) -> None:
        log.info(
            "step %d (%s): done — %d rows in, %d out, %d failed, %d dropped, %d requests sent, %d from cache",
            step.index,
            step.name,
            step.rows_in,
            step.rows_out,
            step.rows_failed,
            step.rows_dropped,
            step.requests_sent,
            step.cache_hits,
        )

    def run_finished(self, summary: RunSummary) -> None:
        log.info("%s", summary.format_text())

    def run_stopped(self, error: BaseException) -> None:
        """The run ended with ``error`` (which reaches the caller): nothing to add to the log."""
