"""``RowOperator``: a plain-Python operator written one row at a time.

``process_row(row, call)`` returns the row's ``Outcome``; a ``MissingInputError`` (raised by
``require``) fails just that row, as it does for LLM operators, instead of stopping the run.
"""

from __future__ import annotations

from typing import Any

from datamill.operators.base import Failed, MissingInputError, Operator, Outcome, Row


class RowOperator(Operator):
    """Base of row-by-row operators: implement ``process_row``."""

    def process_row(self, row: Row, call: dict[str, Any]) -> Outcome:
        raise NotImplementedError(f"{type(self).__name__} must implement process_row()")

    def process_batch(self, rows: list[Row], call: dict[str, Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for row in rows:
            try:
                outcomes.append(self.process_row(row, call))
            except MissingInputError as exc:
                outcomes.append(Failed(str(exc)))
        return outcomes
