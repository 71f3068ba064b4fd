"""The live progress display of a run on a terminal or in a notebook.

The engine's events only update ``StepView``s (``TrackingProgress``); rich redraws from them in
its own refresh thread a few times per second, so rendering never runs on the engine's hot
path however many rows per second commit. Each step takes two lines, so the display stays
whole at 80 columns:

    0 PromptedGenerator  ━━━━━━━━━━━━━━━━━━━━  448/5,000  9%  8.2 rows/s  ETA 9m18s
      in flight 16 · retries 2,592 · failed 448 · 12,345 tokens · $0.0123
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from datamill.pipeline.summary import RunSummary
from datamill.ui.progress import StepView, TrackingProgress, format_cost, format_duration

REFRESH_PER_SECOND = 8
NAME_WIDTH = 22
BAR_WIDTH = 16


def render_steps(views: Iterable[StepView]) -> RenderableType:
    """Two lines per step: name, bar, rows, rate and ETA; then in flight, retries, failures, spend."""
    lines: list[RenderableType] = []
    for view in views:
        fraction = view.fraction
        head = Table.grid(padding=(0, 1))
        head.add_column(width=NAME_WIDTH, no_wrap=True, overflow="ellipsis")
        head.add_column(width=BAR_WIDTH, no_wrap=True)
        head.add_column(no_wrap=True, overflow="ellipsis")
        bar = ProgressBar(
            total=1.0 if fraction is not None else None,
            completed=fraction or 0.0,
            width=BAR_WIDTH,
            pulse=fraction is None and view.status == "running",
        )
        total = "?" if view.total is None else f"{view.total:,}"
        percent = "" if fraction is None else f"  {fraction:.0%}"
        tail = f"ETA {format_duration(view.eta_seconds)}" if view.status == "running" else view.status
        head.add_row(
            f"{view.index} {view.name}",
            bar,
            f"{view.done:,}/{total}{percent}  {view.rows_per_second:.1f} rows/s  {tail}",
        )
        failed = f"[red]failed {view.failed:,}[/red]" if view.failed else "failed 0"
        details = Text.from_markup(
            f"  in flight {view.in_flight:,} · retries {view.retries:,} · {failed} · "
            f"{view.tokens:,} tokens · {format_cost(view.cost_usd)} (total {format_cost(view.total_cost_usd)})",
            overflow="ellipsis",
        )
        details.no_wrap = True
        lines += [head, details]
    return Group(*lines) if lines else Text("starting…")


class LiveDisplay:
    """A rich ``Live`` that redraws ``render()`` on its own thread; ``stop`` on any exit."""

    def __init__(self, console: Console, render: Callable[[], RenderableType]) -> None:
        self._live = Live(
            console=console,
            get_renderable=render,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        if not self._live.is_started:
            self._live.start()

    def stop(self) -> None:
        if self._live.is_started:
            self._live.stop()


class LiveProgress(TrackingProgress):
    """The display of ``datamill run``: ``render_steps`` over this sink's views. Use as a
    context manager so the display stops on any exit."""

    def __init__(self, console: Console, interval: float | None = None) -> None:
        super().__init__(interval)
        self._display = LiveDisplay(console, self.render)

    def __enter__(self) -> LiveProgress:
        self._display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._display.stop()

    def run_finished(self, summary: RunSummary) -> None:
        super().run_finished(summary)
        self.stop()

    def render(self) -> RenderableType:
        return render_steps(self.steps.values())
