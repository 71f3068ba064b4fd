"""Executors: where a step's batches are computed. The driver alone commits.

The runner reads a local (non-LLM) step's input in batches and hands them to an executor's
``map_batches``, which yields each batch back with its outcomes, **in input order**, keeping a
bounded number of batches in flight. The runner then commits them through the same committer
and files as ever, so where a batch was computed never changes what is written, what is
resumed, or what a crash can lose: only the driver touches the cache directory.

``InProcessExecutor`` (the default) computes each batch on the driver's event loop, as the
engine always has. ``RayExecutor`` (``datamill.pipeline.ray_executor``, ``pip install
'datamill[ray]'``) computes row-local batches as Ray tasks and runs local-model servings as
Ray actors. An executor is not part of a step's fingerprint: a run started in-process can be
resumed on Ray and the other way round.

LLM steps reach their models through the request dispatcher on the driver, whatever the
executor; an executor may only change how a local-model serving generates (``start`` sees
every serving of the run before it is started).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from datamill.core.rowfiles import Row
from datamill.errors import ConfigError
from datamill.operators.base import Operator, Outcome
from datamill.serving.base import LLMServingABC

#: What ``forward(executor=...)`` accepts by name.
EXECUTOR_NAMES = ("in-process", "ray")


@dataclass(slots=True)
class BatchInput:
    """One batch of a step's input: its rows, the index of its first row in the step input,
    and the reader position after its last row (what a commit records for resume)."""

    rows: list[Row]
    first_row: int
    end_position: int


@runtime_checkable
class Executor(Protocol):
    """Computes a step's batches; see the module docstring for the contract."""

    async def start(self, servings: Sequence[LLMServingABC]) -> None:
        """Called once per run, before the servings are started."""

    async def close(self) -> None:
        """Called once per run, after the servings are closed; releases what ``start`` took."""

    def map_batches(
        self, op: Operator, call: dict[str, Any], batches: Iterable[BatchInput], *, label: str
    ) -> AsyncGenerator[tuple[BatchInput, list[Outcome]], None]:
        """``(batch, outcomes)`` for every batch, in input order, one ``Outcome`` per row.

        Pulls from ``batches`` only as results are consumed (a bounded number in flight), so
        the driver never holds more than a bounded number of uncommitted rows. ``label``
        names the step in error messages.
        """


class InProcessExecutor:
    """Each batch computed on the driver's event loop, one after the other (the default)."""

    async def start(self, servings: Sequence[LLMServingABC]) -> None:
        return None

    async def close(self) -> None:
        return None

    async def map_batches(
        self, op: Operator, call: dict[str, Any], batches: Iterable[BatchInput], *, label: str
    ) -> AsyncGenerator[tuple[BatchInput, list[Outcome]], None]:
        for batch in batches:
            yield batch, op.process_rows(batch.rows, batch.first_row, call)


def resolve_executor(executor: Executor | str | None) -> Executor:
    """The executor for ``forward(executor=...)``: an ``Executor``, a name, or None (in-process)."""
    if executor is None or executor == "in-process":
        return InProcessExecutor()
    if executor == "ray":
        from datamill.pipeline.ray_executor import RayExecutor

        return RayExecutor()
    if isinstance(executor, str):
        raise ConfigError(
            f"unknown executor {executor!r}: use one of {list(EXECUTOR_NAMES)} or pass an executor "
            "such as RayExecutor(address=...)"
        )
    if not isinstance(executor, Executor):
        raise ConfigError(
            f"executor must be one of {list(EXECUTOR_NAMES)} or an object with start(), close() and "
            f"map_batches(); got {type(executor).__name__}"
        )
    return executor
