"""What a person watching a run needs per step, and the log lines that carry it.

``TrackingProgress`` is a ``ProgressSink`` (``datamill.pipeline.progress``): the engine's
events only update a ``StepView`` — a handful of attribute writes per group commit — and a
log line is formatted at most once per ``interval`` seconds, so tracking costs nothing
measurable at thousands of rows per second. The live display (``datamill.ui.live``) renders the
same views.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from datamill.pipeline.progress import LoggingProgress
from datamill.pipeline.summary import RunSummary, StepSummary

log = logging.getLogger("datamill.progress")

INTERVAL_ENV = "DATAMILL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 5.0


def progress_interval() -> float:
    """Seconds between progress log lines: ``$DATAMILL_PROGRESS_INTERVAL``, else 5."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


@dataclass
class StepView:
    """One step as the display shows it; counts are input rows."""

    index: int
    name: str
    total: int | None
    done: int
    status: str = "running"
    rows_per_second: float = 0.0
    in_flight: int = 0
    retries: int = 0
    failed: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    total_cost_usd: float | None = 0.0
    seconds: float = 0.0

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @property
    def eta_seconds(self) -> float | None:
        if self.status != "running" or self.total is None or self.rows_per_second <= 0:
            return None
        return max(0, self.total - self.done) / self.rows_per_second

    def update(self, step: StepSummary) -> None:
        self.rows_per_second = step.rows_per_second
        self.retries = step.retries
        self.failed = step.rows_failed
        self.tokens = step.prompt_tokens + step.completion_tokens
        self.cost_usd = step.cost_usd
        self.total_cost_usd = step.total_cost_usd
        self.seconds = step.seconds

    def describe(self) -> str:
        """One line: ``step 0 (Gen): 500/1000 rows (50%), 120.0 rows/s, ETA 4s, ...``."""
        total = "?" if self.total is None else str(self.total)
        fraction = self.fraction
        percent = "" if fraction is None else f" ({fraction:.0%})"
        eta = self.eta_seconds
        return (
            f"step {self.index} ({self.name}): {self.done}/{total} rows{percent}, "
            f"{self.rows_per_second:.1f} rows/s, ETA {format_duration(eta)}, "
            f"{self.in_flight} in flight, {self.retries} retries, {self.failed} failed, "
            f"{self.tokens} tokens, {format_cost(self.cost_usd)} this run "
            f"({format_cost(self.total_cost_usd)} in total)"
        )


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


#: How every display shows a cost whose price is unknown: never $0, never a guess.
UNKNOWN_COST = "—"


def format_cost(cost_usd: float | None) -> str:
    """``$0.0123`` below a dollar, ``$1,234.56`` above; ``—`` when the price is unknown."""
    if cost_usd is None:
        return UNKNOWN_COST
    return f"${cost_usd:.4f}" if cost_usd < 1 else f"${cost_usd:,.2f}"


class TrackingProgress(LoggingProgress):
    """``LoggingProgress`` that also keeps a ``StepView`` per step, and whose periodic line
    carries tokens, cost and the ETA as well.
    """

    def __init__(self, interval: float | None = None) -> None:
        super().__init__(progress_interval() if interval is None else interval)
        self.steps: dict[int, StepView] = {}
        self.summary: RunSummary | None = None

    def step_started(self, step: StepSummary, total_rows: int | None, done_rows: int) -> None:
        view = StepView(step.index, step.name, total_rows, done_rows)
        view.update(step)
        self.steps[step.index] = view
        super().step_started(step, total_rows, done_rows)

    def rows_committed(self, step: StepSummary, done_rows: int, dispatch: Any) -> None:
        view = self.steps.get(step.index)
        if view is None:
            return
        view.done = done_rows
        view.in_flight = getattr(dispatch, "in_flight", 0)
        view.update(step)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            log.info("%s", view.describe())

    def step_finished(self, step: StepSummary) -> None:
        view = self.steps.get(step.index)
        if view is not None:
            view.status = step.status
            view.done = step.rows_in
            view.in_flight = 0
            view.update(step)
        super().step_finished(step)

    def run_finished(self, summary: RunSummary) -> None:
        """Keep the summary; its text goes to the run log only (the CLI prints the table)."""
        from datamill.cli.runlog import FILE_ONLY

        self.summary = summary
        log.info("%s", summary.format_text(), extra=FILE_ONLY)
