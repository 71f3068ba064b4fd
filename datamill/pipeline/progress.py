"""Progress events from the engine, and the default sink that logs them.

The engine calls a ``ProgressSink``; the CLI renders a live display from the same events.
Library code never prints.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from datamill.pipeline.summary import RunSummary, StepSummary

log = logging.getLogger("datamill.progress")


class ProgressSink(Protocol):
    def step_started(self, step: StepSummary, total_rows: int | None, done_rows: int) -> None: ...

    def rows_committed(self, step: StepSummary, done_rows: int, dispatch: Any) -> None: ...

    def step_finished(self, step: StepSummary) -> None: ...

    def run_finished(self, summary: RunSummary) -> None: ...


class LoggingProgress:
    """Logs one line per step start and end, and one every ``interval`` seconds in between."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._last = 0.0
        self._total: int | None = None

    def step_started(self, step: StepSummary, total_rows: int | None, done_rows: int) -> None:
        self._total = total_rows
        self._last = time.monotonic()
        log.info(
            "step %d (%s): starting at row %d of %s", step.index, step.name, done_rows, total_rows or "?"
        )

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
