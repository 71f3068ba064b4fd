"""The error boundary of every command: one clear message and a documented exit code.

Exit codes of ``datamill`` (a ``DatamillError`` exits with its ``exit_code``):
  0   done
  1   rows failed (beyond what the pipeline allows), or an error
  2   usage: a wrong argument or option, a pipeline set up wrongly (``ConfigError``)
  75  offline batch jobs are still pending (``OfflineBatchGenerationNotFinished``): rerun the
      same command later to collect them; their table is printed
  76  the budget (``--max-cost`` / ``max_cost_usd``, cumulative over every run) would be passed:
      nothing more was sent; raise it and rerun to continue
  130 interrupted (Ctrl-C); committed work is kept

A traceback is shown only with ``--debug`` (or ``DATAMILL_DEBUG=1``).
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

DEBUG_HELP = "Show the full traceback of an error."

F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled(flag: bool) -> bool:
    return flag or os.environ.get("DATAMILL_DEBUG", "") not in ("", "0")


def guarded(command: F) -> F:
    """Wrap a command so errors reach the user as one message and an exit code.

    The command takes a ``debug`` parameter (its ``--debug`` option). Typer's own usage errors
    and exits pass through untouched.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = debug_enabled(bool(kwargs.get("debug")))
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            _report(None, "interrupted: committed work is kept; rerun the same command to resume", debug)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            raise typer.Exit(report_error(exc, debug)) from None

    return wrapper  # type: ignore[return-value]


def report_error(exc: BaseException, debug: bool) -> int:
    """Print ``exc`` for a person and return the exit code it maps to."""
    from datamill.errors import DatamillError, OfflineBatchGenerationNotFinished

    if isinstance(exc, OfflineBatchGenerationNotFinished) and exc.jobs:
        from datamill.cli.consoles import stderr_console
        from datamill.ui.tables import jobs_table

        stderr_console().print(jobs_table(exc.jobs, title="offline batch jobs"))
    if isinstance(exc, DatamillError):
        _report(exc, str(exc), debug)
        return int(exc.exit_code)
    _report(
        exc,
        f"unexpected {type(exc).__name__}: {exc}\n(rerun with --debug to see the traceback)",
        debug,
    )
    return EXIT_FAILED


def _report(exc: BaseException | None, message: str, debug: bool) -> None:
    if debug and exc is not None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"error: {message}", file=sys.stderr)
