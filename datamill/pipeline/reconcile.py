"""Deciding where a run starts: which steps are current, which must be rewound, and why.

Before any step runs, each step's stored fingerprint is compared with the new one; the first
step that differs, the ``resume_step`` asked for, a step file that lost committed bytes, or a
step with failed rows (retried on resume) sets a rewind point. Rewinding a step keeps its
commits before that point and rewinds every later step to the commits whose input is still
there. Nothing is recomputed twice: unchanged requests come back from the request cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from datamill.core.fingerprint import describe_changes
from datamill.core.rowfiles import stored_position
from datamill.core.state import StateDB
from datamill.errors import ConfigError
from datamill.pipeline.plan import StepPlan

log = logging.getLogger(__name__)


@dataclass
class Reconciliation:
    """The rewinds applied, and the reasons to tell the user, per step."""

    rewinds: dict[int, int] = field(default_factory=dict)
    reasons: dict[int, list[str]] = field(default_factory=dict)


def reconcile(
    state: StateDB, plan: list[StepPlan], *, resume_from_last: bool, resume_step: int | None
) -> Reconciliation:
    result = Reconciliation()
    start = len(plan)
    for step in plan:
        stored = state.load_step(step.index)
        if stored is None:
            start = min(start, step.index)
            break
        if stored["fingerprint"] != step.fingerprint:
            changes = describe_changes(stored["doc"], step.doc or {})
            result.reasons.setdefault(step.index, []).append(
                "configuration changed: " + (", ".join(changes) or "fingerprint version")
            )
            start = min(start, step.index)
            break
        if _step_file_lost_commits(state, step):
            result.reasons.setdefault(step.index, []).append(
                f"{step.output_path} is missing or shorter than its last commit"
            )
            start = min(start, step.index)
            break
    if resume_step is not None:
        if not 0 <= resume_step < len(plan):
            raise ConfigError(
                f"resume_step={resume_step} is out of range: the pipeline has {len(plan)} steps, numbered from 0"
            )
        if resume_step < start:
            result.reasons.setdefault(resume_step, []).append(f"resume_step={resume_step} asked")
        start = min(start, resume_step)
    elif not resume_from_last:
        if start > 0:
            result.reasons.setdefault(0, []).append("resume_from_last=False: starting over")
        start = 0

    rewinds: dict[int, int] = {step.index: 0 for step in plan if step.index >= start}
    if resume_from_last and resume_step is None:
        for step in plan[:start]:
            first_failed = state.first_failed_row(step.index)
            if first_failed is not None:
                keep = state.commit_for_input_row(step.index, first_failed)
                result.reasons.setdefault(step.index, []).append(
                    f"retrying failed rows from input row {first_failed}"
                )
                rewinds.update(_cascade(state, plan, step.index, keep))
                break
    for extra in range(len(plan), state.step_count()):
        rewinds[extra] = 0
    if rewinds:
        state.rewind_steps(rewinds)
    for step in plan:
        stored = state.load_step(step.index)
        status = "pending" if stored is None or step.index in rewinds else stored["status"]
        state.save_step(step.index, step.name, step.fingerprint, step.doc or {}, status)
    result.rewinds = rewinds
    return result


def _cascade(state: StateDB, plan: list[StepPlan], first: int, keep_seq: int) -> dict[int, int]:
    """Rewind ``first`` to ``keep_seq`` and each later step to what its input still holds."""
    rewinds = {first: keep_seq}
    kept_out = _out_rows_through(state, first, keep_seq)
    for step in plan[first + 1 :]:
        keep = state.commit_for_input_row(step.index, kept_out)
        rewinds[step.index] = keep
        kept_out = _out_rows_through(state, step.index, keep)
    return rewinds


def _out_rows_through(state: StateDB, step: int, seq: int) -> int:
    row = state.conn.execute(
        "SELECT COALESCE(SUM(out_rows), 0) FROM commits WHERE step=? AND seq<=?", (step, seq)
    ).fetchone()
    return int(row[0])


def _step_file_lost_commits(state: StateDB, step: StepPlan) -> bool:
    position = state.load_position(step.index)
    if position.seq == 0:
        return False
    return stored_position(step.output_path, step.output_format) < position.out_position
