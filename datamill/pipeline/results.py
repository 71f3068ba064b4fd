"""A pipeline's committed output as Arrow, for ``to_arrow`` / ``to_pandas`` / ``to_hf_dataset``.

The state database (opened read-only: this works while a run is going, and takes no lock) says
how far each step has committed; ``datamill.core.step_tables`` reads that much of the step file.
"""

from __future__ import annotations

from typing import Any

from datamill.core.state import StateDB
from datamill.core.step_tables import committed_table
from datamill.errors import InputFileError
from datamill.pipeline.plan import StepPlan
from datamill.pipeline.storage import BatchedFileStorage


def read_step_table(storage: BatchedFileStorage, step: StepPlan) -> Any:
    """Step ``step``'s committed rows as a ``pyarrow.Table``."""
    if not storage.state_path.is_file():
        raise InputFileError(
            f"{storage.state_path} does not exist yet: {step.label} has committed no rows; call forward() first"
        )
    state = StateDB.open_readonly(storage.state_path)
    try:
        position = state.load_position(step.index)
    finally:
        state.close()
    return committed_table(step.output_path, step.output_format, position)
