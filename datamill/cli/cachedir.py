"""Reading a cache directory from outside a run: find the prefix, open the state database
read-only (no lock, so it works while a run is going), and stream a step's committed rows.

Only committed rows are read: a step file may hold a batch that a running (or killed)
process appended but never recorded, and that batch is not part of the result yet.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from datamill.core.rowfiles import Row
from datamill.core.spend import Spend
from datamill.core.state import StateDB
from datamill.errors import StateError
from datamill.pipeline.storage import read_committed_rows
from datamill.pipeline.summary import describe_status

STATE_SUFFIX = ".state.db"
FINAL_JOB_STATES = frozenset({"completed", "ended", "failed", "expired", "cancelled", "canceled"})


@dataclass
class CacheDir:
    path: Path
    prefix: str

    @property
    def state_path(self) -> Path:
        return self.path / f"{self.prefix}{STATE_SUFFIX}"

    @property
    def lock_path(self) -> Path:
        return self.path / f"{self.prefix}.lock"

    def open_state(self) -> StateDB:
        return StateDB.open_readonly(self.state_path)


def locate_cache(cache: Path, prefix: str | None) -> CacheDir:
    """The cache at ``cache``; without ``prefix``, the directory's only ``*.state.db``."""
    if not cache.is_dir():
        raise typer.BadParameter(f"{cache} is not a directory", param_hint="CACHE")
    if prefix is not None:
        found = CacheDir(cache, prefix)
        if not found.state_path.is_file():
            raise typer.BadParameter(
                f"{found.state_path} does not exist; prefixes here: {', '.join(_prefixes(cache)) or 'none'}",
                param_hint="--prefix",
            )
        return found
    prefixes = _prefixes(cache)
    if len(prefixes) == 1:
        return CacheDir(cache, prefixes[0])
    if not prefixes:
        raise typer.BadParameter(
            f"{cache} holds no *{STATE_SUFFIX}: no pipeline has run with this cache_path yet",
            param_hint="CACHE",
        )
    raise typer.BadParameter(
        f"{cache} holds several caches ({', '.join(prefixes)}); choose one with --prefix",
        param_hint="CACHE",
    )


def _prefixes(cache: Path) -> list[str]:
    return sorted(p.name[: -len(STATE_SUFFIX)] for p in cache.glob(f"*{STATE_SUFFIX}"))


def resolve_step(state: StateDB, step: int) -> int:
    """A step index as given on the command line (negative counts from the end) → 0-based."""
    count = state.step_count()
    if count == 0:
        raise StateError(f"{state.path} records no steps yet: run the pipeline first")
    index = step + count if step < 0 else step
    if not 0 <= index < count:
        raise typer.BadParameter(f"step {step} is out of range: this cache has steps 0..{count - 1}")
    return index


def step_file(cache: CacheDir, state: StateDB, index: int) -> tuple[Path, str]:
    """The output file (or Parquet directory) of step ``index`` and its format."""
    stored = state.load_step(index) or {}
    fmt = str(stored.get("doc", {}).get("format", "jsonl"))
    return cache.path / f"{cache.prefix}_step{index + 1}.{fmt}", fmt


def committed_rows(cache: CacheDir, state: StateDB, index: int, limit: int | None = None) -> Iterator[Row]:
    """The rows step ``index`` has committed, in order (at most ``limit``)."""
    path, fmt = step_file(cache, state, index)
    return read_committed_rows(state, path, fmt, index, limit)


# --- status --------------------------------------------------------------------------------


@dataclass
class StepStatus:
    index: int
    name: str
    state: str
    file: str
    rows_done: int
    rows_total: int | None
    rows_out: int
    rows_failed: int
    rows_dropped: int
    #: The step's own paid calls, tokens and cost across every run (cost None: a price is unknown).
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    #: The same four for the last run alone.
    last_run_spend: dict[str, Any]
    rows_per_second: float | None
    drop_reasons: dict[str, int]


@dataclass
class CacheStatus:
    cache: str
    prefix: str
    run: dict[str, Any] | None
    steps: list[StepStatus]
    jobs: list[dict[str, Any]]
    cached_responses: int
    #: The whole cache across every run: ``requests`` (calls paid), ``prompt_tokens``,
    #: ``completion_tokens``, ``cost_usd``, and ``last_run`` with the same for the last run.
    spend: dict[str, Any]


def read_status(cache: CacheDir) -> CacheStatus:
    state = cache.open_state()
    try:
        run = _last_run(state)
        last_run_id = run["id"] if run is not None else -1
        jobs = _pending_jobs(state)
        steps: list[StepStatus] = []
        for index in range(state.step_count()):
            stored = state.load_step(index) or {}
            totals = state.step_totals(index)
            previous = steps[-1] if steps else None
            if stored.get("status") == "done":
                total: int | None = totals["rows_in"]
            elif previous is not None and previous.state == "done":
                total = previous.rows_out
            else:
                total = None
            steps.append(
                StepStatus(
                    index=index,
                    name=str(stored.get("name", "?")),
                    state=_step_state(stored, totals, run, steps, jobs, index),
                    file=step_file(cache, state, index)[0].name,
                    rows_done=totals["rows_in"],
                    rows_total=total,
                    rows_out=totals["rows_out"],
                    rows_failed=totals["rows_failed"],
                    rows_dropped=totals["rows_dropped"],
                    requests=totals["spend"].requests,
                    prompt_tokens=totals["prompt_tokens"],
                    completion_tokens=totals["completion_tokens"],
                    cost_usd=totals["cost_usd"],
                    last_run_spend=_four(state.spend(step=index, run=last_run_id)),
                    rows_per_second=_throughput(state, index, run, stored.get("status") == "done"),
                    drop_reasons=state.drop_reasons(index),
                )
            )
        spend = _four(state.spend())
        spend["last_run"] = _four(state.spend(run=last_run_id))
        return CacheStatus(str(cache.path), cache.prefix, run, steps, jobs, state.cached_count(), spend)
    finally:
        state.close()


def _four(spend: Spend) -> dict[str, Any]:
    """``requests``, ``prompt_tokens``, ``completion_tokens`` and ``cost_usd`` of ``spend``."""
    figures = spend.to_dict()
    return {name: figures[name] for name in ("requests", "prompt_tokens", "completion_tokens", "cost_usd")}


def status_document(cache: CacheDir) -> dict[str, Any]:
    """What ``datamill status --json`` prints, as a dict: also the web page's status API."""
    return dataclasses.asdict(read_status(cache))


def _step_state(
    stored: dict[str, Any],
    totals: dict[str, Any],
    run: dict[str, Any] | None,
    earlier: list[StepStatus],
    jobs: list[dict[str, Any]],
    index: int,
) -> str:
    """What is happening to a step, in words: complete, failed rows, running, waiting for
    batch jobs, stopped at a row, not started."""
    if stored.get("status") == "done":
        return "failed rows" if totals["rows_failed"] else "complete"
    if any(job.get("step") == index for job in jobs):
        return "waiting for batch jobs"
    first_unfinished = all(step.state in ("complete", "failed rows") for step in earlier)
    if run is not None and run["status"] == "running" and first_unfinished:
        return "running"
    if totals["rows_in"]:
        return "stopped" if run is None else f"stopped ({describe_status(str(run['status']))})"
    return "not started"


def _last_run(state: StateDB) -> dict[str, Any] | None:
    row = state.conn.execute(
        "SELECT id, pid, started_at, finished_at, status FROM runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    run = {"id": row[0], "pid": row[1], "started_at": row[2], "finished_at": row[3], "status": row[4]}
    if run["status"] == "running" and not _process_alive(int(run["pid"])):
        run["status"] = "interrupted"
    return run


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _throughput(state: StateDB, index: int, run: dict[str, Any] | None, done: bool) -> float | None:
    """Input rows per second this step committed during the last run, from commit times
    (up to now for the step a live run is working on)."""
    if run is None:
        return None
    started = float(run["started_at"])
    if index > 0:
        row = state.conn.execute(
            "SELECT MAX(committed_at) FROM commits WHERE step=? AND committed_at>=?", (index - 1, started)
        ).fetchone()
        if row[0] is not None:
            started = max(started, float(row[0]))
    row = state.conn.execute(
        "SELECT MAX(in_row_end), MAX(committed_at) FROM commits WHERE step=? AND committed_at>=?",
        (index, started),
    ).fetchone()
    if row[0] is None:
        return None
    before = state.conn.execute(
        "SELECT COALESCE(MAX(in_row_end), 0) FROM commits WHERE step=? AND committed_at<?", (index, started)
    ).fetchone()[0]
    end = float(row[1]) if done or run["status"] != "running" else time.time()
    seconds = end - started
    return (int(row[0]) - int(before)) / seconds if seconds > 0 else None


def _pending_jobs(state: StateDB) -> list[dict[str, Any]]:
    """Offline batch jobs whose provider status is not final (the offline store's table)."""
    found = state.conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%batch_jobs' ORDER BY name"
    ).fetchone()
    if found is None:
        return []
    cursor = state.conn.execute(f'SELECT * FROM "{found[0]}"')
    columns = [d[0] for d in cursor.description]
    jobs = [dict(zip(columns, row, strict=True)) for row in cursor]
    return [job for job in jobs if str(job.get("status") or "").lower() not in FINAL_JOB_STATES]
