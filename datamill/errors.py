"""The one exception hierarchy of datamill.

Errors are translated at the boundary they cross (provider HTTP errors in serving, file and
SQLite errors in core), and every message says what to do next. Callers catch these types,
never ``aiohttp`` or ``sqlite3`` exceptions from layers below.
"""

from __future__ import annotations

from typing import Any


class DatamillError(Exception):
    """Base of every error datamill raises on purpose."""

    exit_code: int = 1


class ConfigError(DatamillError):
    """The pipeline, an operator or a serving was set up wrongly (bad argument, unknown key)."""

    exit_code = 2


class KeyValidationError(ConfigError):
    """``compile()`` found input keys that no column or earlier step provides."""


class InputFileError(DatamillError):
    """An input or step file cannot be read: missing, malformed line, wrong encoding."""


class CacheLockedError(DatamillError):
    """Another live process holds the cache directory's lock."""


class StateError(DatamillError):
    """The state database is unreadable, from a newer version, or disagrees with the files."""


class ServingError(DatamillError):
    """A model call failed in a way that retrying cannot fix (auth, bad request, exhausted retries)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class InvalidResponseError(ServingError):
    """The provider answered, but the reply is malformed or fails its schema."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class RowsFailedError(DatamillError):
    """A run finished with more failed rows than the pipeline allows.

    Failed rows are recorded in the state database with their errors; ``forward()`` with
    ``resume_from_last=True`` retries them.
    """

    def __init__(self, message: str, *, summary: Any = None) -> None:
        super().__init__(message)
        self.summary = summary


class BudgetExceededError(DatamillError):
    """The run reached ``max_cost_usd``; it stopped after committing its batch."""

    def __init__(self, message: str, *, summary: Any = None) -> None:
        super().__init__(message)
        self.summary = summary


class OfflineBatchGenerationNotFinished(DatamillError):
    """Offline batch jobs were submitted or are still running; rerun the same command to poll.

    ``jobs`` holds one dict per provider job (id, status, counts); nothing is lost by
    stopping here: every job id is recorded in the state database before this is raised.
    """

    exit_code = 75

    def __init__(self, message: str, *, jobs: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.jobs = jobs or []


class ExecutorError(DatamillError):
    """An executor could not compute a batch: its cluster is unreachable, or a task kept
    failing past its retries. Every batch before it is committed; rerun to resume."""
