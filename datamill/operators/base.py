"""The operator contract.

An operator is a small class with one entry point. In a pipeline's ``forward()`` the user
calls ``op.run(storage.step(), input_key=..., output_key=...)``; that call only *records* the
step (``compile()`` traces ``forward()`` without running anything). The engine then feeds the
step's input to the operator batch by batch.

Two kinds:

* ``Operator`` — plain Python: implement ``process_batch(rows, call)`` returning one
  ``Outcome`` per input row. Set ``row_local = False`` for whole-dataset operators (dedup);
  the engine then calls ``prepare(rows, call)`` with a full pass over the step input first.
* ``LLMOperator`` — model calls: implement ``build_requests(row, call)`` and
  ``apply_responses(row, responses, call)``. The engine owns caching, concurrency, retries,
  offline batching and failure accounting, so these two stay pure functions.

An ``Outcome`` is one of: a dict (the output row), a list of dicts (zero or more rows: an
expansion), ``Dropped(reason)`` (filtered out, counted by reason), ``Failed(error)`` (recorded
in the state database and retried on resume).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from datamill.core.fingerprint import strip_excluded
from datamill.errors import ConfigError
from datamill.serving.base import LLMServingABC
from datamill.serving.types import GenericRequest, GenericResponse

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dropped:
    """The row was filtered out on purpose; ``reason`` is counted in the state database."""

    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The row could not be produced; ``error`` is recorded and the row is retried on resume."""

    error: str


Outcome = Union[Row, list[Row], Dropped, Failed]


class MissingInputError(Exception):
    """A row lacks a key the operator needs; the engine records the row as failed."""


class Operator:
    """Base of every operator. See the module docstring for the contract."""

    row_local: ClassVar[bool] = True

    def run(self, storage: Any, **call: Any) -> None:
        """Record this operator as the next step of the pipeline, with the call's keys."""
        attach = getattr(storage, "attach", None)
        if attach is None:
            raise ConfigError(
                f"{type(self).__name__}.run() needs the storage step: call it as "
                "op.run(self.storage.step(), ...)"
            )
        attach(self, call)

    # --- what compile() and the fingerprint need ---------------------------------------

    def input_keys(self, call: dict[str, Any]) -> list[str]:
        """Columns the input rows must have for this call (checked by ``compile()``)."""
        key = call.get("input_key")
        return [key] if isinstance(key, str) else list(key or [])

    def output_keys(self, call: dict[str, Any]) -> list[str]:
        """Columns this call adds, available to later steps."""
        key = call.get("output_key")
        return [key] if isinstance(key, str) else list(key or [])

    def fingerprint_config(self) -> dict[str, Any]:
        """What in this operator changes its output; servings contribute their own config."""
        config: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, LLMServingABC):
                config[name] = value.fingerprint_config()
            elif isinstance(value, (str, int, float, bool, type(None), list, dict, tuple)):
                config[name] = value
            else:
                config[name] = (
                    repr(value) if type(value).__repr__ is not object.__repr__ else type(value).__name__
                )
        return strip_excluded(config)

    # --- execution ---------------------------------------------------------------------

    def prepare(self, rows: Iterable[Row], call: dict[str, Any]) -> None:
        """Whole-dataset operators (``row_local = False``) see the full step input here first."""

    def process_batch(self, rows: list[Row], call: dict[str, Any]) -> list[Outcome]:
        """One ``Outcome`` per input row, in order."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_batch()")

    def process_rows(self, rows: list[Row], first_row: int, call: dict[str, Any]) -> list[Outcome]:
        """What the engine calls: ``first_row`` is the batch's index in the step input, for
        whole-dataset operators that decided per row in ``prepare``. Defaults to
        ``process_batch``.
        """
        return self.process_batch(rows, call)


class LLMOperator(Operator):
    """An operator whose rows come from model calls through ``self.llm_serving``."""

    llm_serving: LLMServingABC
    #: Whether ``apply_responses`` may refuse a reply (``InvalidResponseError``). The offline
    #: path then checks each cached reply to resubmit the invalid ones; it skips that work for
    #: operators that take any reply.
    validates_replies: bool = True

    def build_requests(self, row: Row, call: dict[str, Any]) -> list[GenericRequest]:
        """The requests for one row; raise ``MissingInputError`` if the row lacks its input."""
        raise NotImplementedError

    def apply_responses(self, row: Row, responses: list[GenericResponse], call: dict[str, Any]) -> Outcome:
        """Turn the row's responses into its outcome; parsing lives here, outside the cache key."""
        raise NotImplementedError


def require(row: Row, key: str) -> Any:
    """The row's value for ``key``; a missing or null value is a ``MissingInputError``."""
    value = row.get(key)
    if value is None:
        raise MissingInputError(f"row has no value for input key {key!r}")
    return value
