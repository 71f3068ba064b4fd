"""Throughput and spend over time per step, from the commits table, drawn as SVG.

The series cover the last run (from its start; everything, if it has committed nothing yet)
in at most ``BUCKETS`` time buckets summed by SQLite, so a step with 100,000 commits costs one
aggregate query, and the SVG is drawn on the server: the page needs no chart library and works
offline.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from datamill.core.state import StateDB

BUCKETS = 60
#: Buckets averaged into each rows/s point: commits land in groups, so one bucket alone is jagged.
SMOOTHING = 3
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
WIDTH, PANEL_HEIGHT, MARGIN_LEFT, MARGIN_TOP, GAP = 760, 170, 64, 26, 24

#: ``in_row_end`` is cumulative per step, so a bucket's input rows are its last ``in_row_end``
#: less the one before it: one grouped scan, no window function.
_BUCKETED = """
SELECT step, MIN(CAST((committed_at - ?1) / ?2 AS INTEGER), ?3 - 1) AS bucket, MAX(in_row_end)
FROM commits WHERE committed_at >= ?1 GROUP BY step, bucket ORDER BY step, bucket
"""
#: Spend is recorded when a paid response is stored (``datamill.core.spend``), not per commit.
_SPEND_BUCKETED = """
SELECT step, MIN(CAST((recorded_at - ?1) / ?2 AS INTEGER), ?3 - 1) AS bucket, SUM(cost_usd)
FROM spend WHERE recorded_at >= ?1 AND step IS NOT NULL GROUP BY step, bucket
"""


def read_series(state: StateDB, run: dict[str, Any] | None) -> dict[str, Any]:
    """Per step: ``[seconds since start, rows/s, cumulative cost]`` at the end of each bucket
    (rows/s averaged over the last ``SMOOTHING`` buckets)."""
    first, last = state.conn.execute("SELECT MIN(committed_at), MAX(committed_at) FROM commits").fetchone()
    if first is None:
        return {"start": None, "seconds": 0.0, "steps": {}}
    start = float(first)
    if run is not None and last is not None and float(last) >= float(run["started_at"]):
        start = float(run["started_at"])
    end = time.time() if run is not None and run["status"] == "running" else float(last)
    span = max(end - start, 1.0)
    width = span / BUCKETS
    names = {index: (state.load_step(index) or {}).get("name", "?") for index in range(state.step_count())}
    rows_before = dict(
        state.conn.execute(
            "SELECT step, MAX(in_row_end) FROM commits WHERE committed_at < ? GROUP BY step", (start,)
        )
    )
    cost_before = dict(
        state.conn.execute(
            "SELECT step, SUM(cost_usd) FROM spend WHERE recorded_at < ? GROUP BY step", (start,)
        )
    )
    rows_at: dict[int, dict[int, float]] = {}
    for step, bucket, row_end in state.conn.execute(_BUCKETED, (start, width, BUCKETS)):
        rows_at.setdefault(int(step), {})[int(bucket)] = float(row_end)
    cost_at: dict[int, dict[int, float]] = {}
    for step, bucket, cost in state.conn.execute(_SPEND_BUCKETED, (start, width, BUCKETS)):
        cost_at.setdefault(int(step), {})[int(bucket)] = float(cost or 0.0)
    steps: dict[int, dict[str, Any]] = {}
    for step in sorted(rows_at.keys() | cost_at.keys()):
        rows, costs = rows_at.get(step, {}), cost_at.get(step, {})
        row_end = float(rows_before.get(step) or 0.0)
        cost = float(cost_before.get(step) or 0.0)
        opening = min(rows.keys() | costs.keys())
        ends = [row_end]  # the step's input rows done at the end of each bucket so far
        points = [[opening * width, 0.0, cost]]
        for bucket in range(opening, max(rows.keys() | costs.keys()) + 1):  # no commits: 0 rows/s
            row_end = rows.get(bucket, row_end)
            cost += costs.get(bucket, 0.0)
            ends.append(row_end)
            window = min(SMOOTHING, len(ends) - 1)
            points.append([(bucket + 1) * width, (ends[-1] - ends[-1 - window]) / (window * width), cost])
        steps[step] = {"name": names.get(step, "?"), "points": points}
    return {"start": start, "seconds": span, "steps": steps}


def render_svg(series: dict[str, Any]) -> str:
    """Two panels, rows/s and cumulative spend (USD) against time, one line per step."""
    steps = series["steps"]
    height = 2 * (PANEL_HEIGHT + MARGIN_TOP) + GAP + 40 if steps else 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="system-ui, sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
    ]
    if not steps:
        parts.append('<text x="20" y="25" fill="#555">no batch committed yet</text></svg>')
        return "".join(parts)
    span = float(series["seconds"])
    for panel, (title, column, fmt) in enumerate(
        (("rows/s (input rows, per step)", 1, _number), ("spend, USD (cumulative, per step)", 2, _usd))
    ):
        top = MARGIN_TOP + panel * (PANEL_HEIGHT + MARGIN_TOP + GAP)
        peak = max((point[column] for s in steps.values() for point in s["points"]), default=0.0) or 1.0
        parts.append(_axes(top, title, peak, span, fmt))
        for step, data in sorted(steps.items()):
            xy = [
                (
                    MARGIN_LEFT + (WIDTH - MARGIN_LEFT - 16) * point[0] / span,
                    top + PANEL_HEIGHT - PANEL_HEIGHT * point[column] / peak,
                )
                for point in data["points"]
            ]
            colour = COLOURS[step % len(COLOURS)]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}"/>')
            for x, y in xy[-1:]:
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
    legend_y = height - 12
    for position, (step, data) in enumerate(sorted(steps.items())):
        x = MARGIN_LEFT + position * 150
        colour = COLOURS[step % len(COLOURS)]
        parts.append(f'<rect x="{x}" y="{legend_y - 9}" width="12" height="4" fill="{colour}"/>')
        label = escape(f"{step} {data['name']}")
        parts.append(f'<text x="{x + 16}" y="{legend_y - 4}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axes(top: int, title: str, peak: float, span: float, fmt: Any) -> str:
    right = WIDTH - 16
    bottom = top + PANEL_HEIGHT
    parts = [
        f'<text x="{MARGIN_LEFT}" y="{top - 8}" font-weight="600">{escape(title)}</text>',
        f'<line x1="{MARGIN_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#888"/>',
        f'<line x1="{MARGIN_LEFT}" y1="{top}" x2="{MARGIN_LEFT}" y2="{bottom}" stroke="#888"/>',
    ]
    for fraction in (0.5, 1.0):
        y = bottom - PANEL_HEIGHT * fraction
        parts.append(f'<line x1="{MARGIN_LEFT}" y1="{y}" x2="{right}" y2="{y}" stroke="#eee"/>')
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4}" text-anchor="end">{fmt(peak * fraction)}</text>'
        )
    parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{bottom + 4}" text-anchor="end">0</text>')
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = MARGIN_LEFT + (right - MARGIN_LEFT) * fraction
        parts.append(
            f'<text x="{x:.0f}" y="{bottom + 14}" text-anchor="middle" fill="#555">{_duration(span * fraction)}</text>'
        )
    return "".join(parts)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _usd(value: float) -> str:
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
