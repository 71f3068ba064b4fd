"""Refusing to run over step files whose state database is missing, empty or unreadable.

The state database is what says how much of each step file is committed. Without it a run
would see no commits, rewind every step and truncate the files, then pay again for every
request (the request cache lives in the same database). So a run that finds step files
holding rows but no usable database stops and names the two safe ways on: restore the
database, or start over, which first moves the old step files into a timestamped folder
beside them. Nothing is truncated or deleted here.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from pathlib import Path

from datamill.errors import StateError
from datamill.pipeline.storage import BatchedFileStorage

log = logging.getLogger(__name__)

#: Files of the state database moved aside with it (SQLite's write-ahead log and its index).
_STATE_COMPANIONS = ("", "-wal", "-shm")


def check_state_database(storage: BatchedFileStorage, *, start_over: bool) -> None:
    """Raise ``StateError`` when step files hold rows but the state database cannot vouch for
    them; with ``start_over`` (``resume_from_last=False``, ``datamill run --fresh``) move them
    and the unusable database into ``{prefix}.set-aside-{time}`` instead, and let the run begin
    afresh. Call it under the cache lock, before the state database is opened.
    """
    step_files = [path for path in _step_files(storage) if _holds_rows(path)]
    if not step_files:
        return
    problem = _state_problem(storage.state_path)
    if problem is None:
        return
    names = ", ".join(path.name for path in step_files)
    if start_over:
        folder = _set_aside(storage, step_files)
        log.warning(
            "%s %s: moved %s and the old state files into %s; starting over",
            storage.state_path,
            problem,
            names,
            folder,
        )
        return
    raise StateError(
        f"{storage.state_path} {problem}, but step files beside it hold rows ({names}); without it "
        "datamill cannot tell which rows were committed, and nothing has been changed. Either restore "
        "that file (with its -wal file, if you have one) and rerun, or start over with "
        "`datamill run --fresh` / forward(resume_from_last=False), which first moves the old step "
        f"files into a timestamped folder in {storage.cache_path} and then pays again for every request."
    )


def _step_files(storage: BatchedFileStorage) -> list[Path]:
    pattern = re.compile(rf"{re.escape(storage.file_name_prefix)}_step\d+\.(jsonl|csv|parquet)")
    if not storage.cache_path.is_dir():
        return []
    return sorted(path for path in storage.cache_path.iterdir() if pattern.fullmatch(path.name))


def _holds_rows(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.stat().st_size > 0


def _state_problem(path: Path) -> str | None:
    """What is wrong with the state database, or None when it records the steps."""
    if not path.exists():
        return "is missing"
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            steps = conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"cannot be read ({exc})"
    if steps == 0:
        return "records no step"
    return None


def _set_aside(storage: BatchedFileStorage, step_files: list[Path]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = storage.cache_path / f"{storage.file_name_prefix}.set-aside-{stamp}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = storage.cache_path / f"{storage.file_name_prefix}.set-aside-{stamp}-{suffix}"
    folder.mkdir()
    state_files = [storage.state_path.with_name(storage.state_path.name + c) for c in _STATE_COMPANIONS]
    for path in [*step_files, *(p for p in state_files if p.exists())]:
        os.replace(path, folder / path.name)
    return folder
