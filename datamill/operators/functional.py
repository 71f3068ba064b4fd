"""Operators wrapping a Python function: ``MapOperator``, ``FilterOperator``, ``ExpandOperator``.

Each takes the function at construction and the columns at ``run``. With ``input_key`` the
function receives that column's value (a list of keys: a dict of those columns); without it,
the whole row. With ``output_key`` its result is stored in that column; without it, a map
returns the whole new row and an expansion returns whole rows.

The step fingerprint names the function and hashes its source (``inspect.getsource``; the
bytecode when no source is available), so editing the function reruns the step. Values a
closure captures are not in the source: pass them as ``config`` (any JSON-able value, part of
the fingerprint) when they change the output. An exception inside the function fails that
row, with the error recorded; the row is retried on resume.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from datamill.core.fingerprint import canonical_json
from datamill.errors import ConfigError
from datamill.operators.base import Dropped, Failed, MissingInputError, Outcome, Row, require
from datamill.operators.rowwise import RowOperator


def function_identity(fn: Callable[..., Any]) -> dict[str, str]:
    """The qualified name of ``fn`` and a SHA-256 of its source (or of its bytecode)."""
    target = getattr(fn, "__func__", fn)
    qualname = getattr(target, "__qualname__", type(target).__qualname__)
    module = getattr(target, "__module__", None) or getattr(
        getattr(target, "__objclass__", None), "__module__", ""
    )
    name = f"{module}.{qualname}" if module else qualname
    try:
        material = inspect.getsource(target).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        material = (code.co_code + repr(code.co_consts).encode()) if code is not None else name.encode()
    return {"name": name, "sha256": hashlib.sha256(material).hexdigest()}


class FunctionOperator(RowOperator):
    """Shared by the three: the function, its fingerprint, and what it is called with."""

    def __init__(self, fn: Callable[..., Any], *, config: Any = None) -> None:
        if not callable(fn):
            raise ConfigError(f"{type(self).__name__} needs a callable, got {type(fn).__name__}")
        self._fn = fn
        self.config = config
        canonical_json(config)  # fails early on a config that cannot be part of the fingerprint

    def run(
        self, storage: Any, input_key: str | list[str] | None = None, output_key: str | None = None
    ) -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key, output_key=output_key)

    def fingerprint_config(self) -> dict[str, Any]:
        return {**super().fingerprint_config(), "function": function_identity(self._fn)}

    def call_fn(self, row: Row, call: dict[str, Any]) -> Any:
        key = call.get("input_key")
        if key is None:
            argument: Any = row
        elif isinstance(key, str):
            argument = require(row, key)
        else:
            argument = {name: require(row, name) for name in key}
        return self._fn(argument)

    def process_row(self, row: Row, call: dict[str, Any]) -> Outcome:
        try:
            return self.outcome(row, self.call_fn(row, call), call)
        except MissingInputError:
            raise
        except Exception as exc:  # a user function's error fails its row, with the error kept
            return Failed(f"{function_identity(self._fn)['name']} raised {type(exc).__name__}: {exc}")

    def outcome(self, row: Row, result: Any, call: dict[str, Any]) -> Outcome:
        raise NotImplementedError


class MapOperator(FunctionOperator):
    """One output row per input row: ``row[output_key] = fn(...)``, or ``fn(row)`` is the new row."""

    def outcome(self, row: Row, result: Any, call: dict[str, Any]) -> Outcome:
        if call.get("output_key"):
            return {**row, call["output_key"]: result}
        if not isinstance(result, dict):
            return Failed(
                f"{function_identity(self._fn)['name']} returned {type(result).__name__}, not a row dict"
            )
        return result


class FilterOperator(FunctionOperator):
    """Keep the rows for which ``predicate(...)`` is true; the others are ``Dropped(reason)``
    (by default ``"<function name> returned False"``).
    """

    def __init__(
        self, predicate: Callable[..., Any], *, reason: str | None = None, config: Any = None
    ) -> None:
        super().__init__(predicate, config=config)
        self.reason = reason or f"{getattr(predicate, '__name__', 'predicate')} returned False"

    def run(self, storage: Any, input_key: str | list[str] | None = None) -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key)

    def outcome(self, row: Row, result: Any, call: dict[str, Any]) -> Outcome:
        return row if result else Dropped(self.reason)


class ExpandOperator(FunctionOperator):
    """Zero or more output rows per input row from ``fn(...) -> list``: with ``output_key``,
    one copy of the row per item with the item in that column; without, each item is a whole
    row (a dict). An empty list drops the row (``Dropped("expanded to no rows")``).
    """

    def outcome(self, row: Row, result: Any, call: dict[str, Any]) -> Outcome:
        name = function_identity(self._fn)["name"]
        if not isinstance(result, (list, tuple)):
            return Failed(f"{name} returned {type(result).__name__}, not a list")
        if not result:
            return Dropped("expanded to no rows")
        key = call.get("output_key")
        if key:
            return [{**row, key: item} for item in result]
        if not all(isinstance(item, dict) for item in result):
            return Failed(f"{name} must return a list of row dicts when no output_key is given")
        return list(result)
