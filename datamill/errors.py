"""The one exception hierarchy of datamill.

Errors are translated at the boundary they cross (provider HTTP errors in serving, file and
SQLite errors in core), and every message says what to do next. Callers catch these types,
never ``aiohttp`` or ``sqlite3`` exceptions from layers below.
"""

from __future__ import annotations

from typing import Any

#: What to tell a person, by topic: (from Python, from the ``datamill`` command line).
ADVICE = {
    "retry_failed": ("forward(resume_from_last=True)", "rerunning the same datamill run command"),
    "block_until_done": (
        "offline_batch_generation_block_until_done=SECONDS on the serving",
        "--block-until-done SECONDS",
    ),
    "raise_budget": ("a higher max_cost_usd", "a higher --max-cost"),
    "resume_step": ("resume_step=k", "--resume-step K"),
    "start_over": ("resume_from_last=False", "--fresh"),
}
_from_cli = False


def speak_to_cli() -> None:
    """From now on, messages name ``datamill`` command-line flags instead of Python arguments
    (the CLI calls this once at start)."""
    global _from_cli
    _from_cli = True


def advice(topic: str) -> str:
    """How to do ``topic`` (a key of ``ADVICE``) in the words of the caller's interface."""
    python, cli = ADVICE[topic]
    return cli if _from_cli else python


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
    """A model call failed in a way that retrying cannot fix (auth, bad request, exhausted retries).

    ``systematic`` names a cause no row can fix (``"connection refused"``, ``"HTTP 404"``...):
    the serving's circuit breaker (``datamill.serving.breaker``) stops the run on it instead of
    failing every row one by one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        systematic: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.systematic = systematic


class ServingStoppedError(ServingError):
    """Every request of a serving fails for a reason no row can fix (connection refused, DNS,
    TLS, 404, unknown model, 401/403): the run stopped sending, kept what it had committed,
    and says what to check. ``url``, ``model`` and ``cause`` say which serving and why;
    ``failures`` counts the requests that failed that way before the run stopped.
    """

    fatal = True

    def __init__(
        self, message: str, *, url: str, model: str, cause: str, failures: int, status: int | None = None
    ) -> None:
        super().__init__(message, status=status, systematic=cause)
        self.url = url
        self.model = model
        self.cause = cause
        self.failures = failures


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
    """Sending more would pass ``max_cost_usd`` (the cache's spend over every run): the run sent
    nothing more, committed what was answered, and stopped. Raise the cap and rerun."""

    exit_code = 76

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
