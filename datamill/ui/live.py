"""The live progress display of ``datamill run`` on a terminal.

The engine's events only update ``StepView``s (``TrackingProgress``); rich redraws from them in
its own refresh thread a few times per second, so rendering never runs on the engine's hot
path however many rows per second commit.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from datamill.pipeline.summary import RunSummary
from datamill.ui.progress import TrackingProgress, format_cost, format_duration

REFRESH_PER_SECOND = 8


class LiveProgress(TrackingProgress):
    """Draws one row per step: bar, rows done / total, rows/s, ETA, in flight, retries,
    failures, tokens and cost. Use as a context manager so the display stops on any exit.
    """

    def __init__(self, console: Console, interval: float | None = None) -> None:
        super().__init__(interval)
        self._live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._live.is_started:
            self._live.stop()

    def run_finished(self, summary: RunSummary) -> None:
        super().run_finished(summary)
        self.stop()

    def render(self) -> RenderableType:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column, justify in (
            ("step", "left"),
            ("", "left"),
            ("rows", "right"),
            ("rows/s", "right"),
            ("ETA", "right"),
            ("in flight", "right"),
            ("retries", "right"),
            ("failed", "right"),
            ("tokens", "right"),
            ("cost", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        if not self.steps:
            table.add_row("starting…")
        for view in list(self.steps.values()):
            fraction = view.fraction
            bar: Any = ProgressBar(
                total=1.0 if fraction is not None else None,
                completed=fraction or 0.0,
                width=30,
                pulse=fraction is None and view.status == "running",
            )
            table.add_row(
                f"{view.index} {view.name}" + ("" if view.status == "running" else f" ({view.status})"),
                bar,
                f"{view.done}/{'?' if view.total is None else view.total}",
                f"{view.rows_per_second:.1f}",
                format_duration(view.eta_seconds),
                str(view.in_flight),
                str(view.retries),
                f"[red]{view.failed}[/red]" if view.failed else "0",
                f"{view.tokens:,}",
                format_cost(view.cost_usd),
            )
        return table
