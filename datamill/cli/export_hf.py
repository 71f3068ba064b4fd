"""``datamill export --format hf``: a step's committed rows as a ``datasets`` folder.

The rows go from the step file to Arrow to ``Dataset.save_to_disk`` without becoming Python
objects. The folder is written under a temporary name and renamed, so ``--out`` is either
absent or complete; ``datasets.load_from_disk(DIR)`` reads it, and
``load_from_disk(DIR).push_to_hub(REPO)`` publishes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from datamill.cli.cachedir import CacheDir, step_file
from datamill.core.state import StateDB
from datamill.core.step_tables import committed_table, to_dataset


def export_hf(cache: CacheDir, state: StateDB, index: int, out: Path) -> int:
    """Write step ``index``'s committed rows to the folder ``out``; returns the row count."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise typer.BadParameter(
            f"{out} already exists; give a new folder or remove it first", param_hint="--out"
        )
    path, fmt = step_file(cache, state, index)
    dataset = to_dataset(committed_table(path, fmt, state.load_position(index)))
    temp = out.with_name(out.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        dataset.save_to_disk(str(temp))
        if out.exists():
            out.rmdir()
        temp.rename(out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return len(dataset)
