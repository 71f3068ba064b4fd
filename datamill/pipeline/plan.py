"""Turning a traced ``forward()`` into a plan: validated keys and step fingerprints."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamill.core.fingerprint import fingerprint
from datamill.core.inputs import InputSource, input_identity
from datamill.core.rowfiles import read_head
from datamill.errors import ConfigError, KeyValidationError
from datamill.operators.base import Operator
from datamill.pipeline.storage import BatchedFileStorage, StepCall

log = logging.getLogger(__name__)

HEAD_ROWS = 20


@dataclass
class StepPlan:
    """One step: its operator and call, where it reads and writes, and its fingerprint."""

    index: int
    operator: Operator
    call: dict[str, Any]
    input_path: Path | InputSource
    input_format: str
    output_path: Path
    output_format: str
    doc: dict[str, Any] | None = None
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return type(self.operator).__name__

    @property
    def label(self) -> str:
        return f"step {self.index} ({self.name})"


def build_plan(storage: BatchedFileStorage, calls: list[StepCall]) -> list[StepPlan]:
    if not calls:
        raise ConfigError("forward() ran no operator: call op.run(self.storage.step(), ...) for each step")
    plan = []
    for index, recorded in enumerate(calls):
        if not isinstance(recorded.operator, Operator):
            raise ConfigError(f"step {index}: {type(recorded.operator).__name__} is not a datamill Operator")
        input_path, input_format = storage.step_input(index)
        plan.append(
            StepPlan(
                index=index,
                operator=recorded.operator,
                call=recorded.call,
                input_path=input_path,
                input_format=input_format,
                output_path=storage.step_path(index),
                output_format=storage.cache_type,
            )
        )
    return plan


def validate_keys(plan: list[StepPlan], input_path: Path | InputSource) -> None:
    """Check every step's input keys against the input's columns and earlier outputs.

    Reads only the first ``HEAD_ROWS`` rows. All problems are reported at once. An empty
    input, or one whose first rows have no columns, leaves nothing to check against: that is
    a warning naming the file (the run would complete with nothing to show), not an error.
    """
    head = read_head(input_path, HEAD_ROWS)
    available: list[str] = list(dict.fromkeys(key for row in head for key in row))
    if not available:
        what = "is empty" if not head else f"has no columns in its first {len(head)} row(s)"
        log.warning("%s %s: compile() did not check the input keys of any step", input_path, what)
        return
    problems = []
    for step in plan:
        missing = [key for key in step.operator.input_keys(step.call) if key not in available]
        if missing:
            problems.append(f"{step.label}: input key(s) {missing} not found; available columns: {available}")
        for key in step.operator.output_keys(step.call):
            if key not in available:
                available.append(key)
    if problems:
        raise KeyValidationError(
            "compile() found keys that no column or earlier step provides:\n  " + "\n  ".join(problems)
        )


def compute_fingerprints(plan: list[StepPlan], storage: BatchedFileStorage) -> None:
    """Fill each step's fingerprint document: operator, config, call, format and upstream."""
    upstream: dict[str, Any] = {"input_file": input_identity(storage.input_path)}
    for step in plan:
        step.doc = {
            "operator": f"{type(step.operator).__module__}.{type(step.operator).__qualname__}",
            "config": step.operator.fingerprint_config(),
            "call": step.call,
            "format": step.output_format,
            "upstream": upstream,
        }
        step.fingerprint = fingerprint(step.doc)
        upstream = {"step": step.index, "fingerprint": step.fingerprint}
