"""How a plain script ends when its offline batch jobs are still running.

``forward()`` raises ``OfflineBatchGenerationNotFinished`` while jobs run, so a program can
catch it and tell that jobs are pending (as distilabel's pipelines raise
``DistilabelOfflineBatchGenerationNotFinishedException``). Left uncaught in a script run as
``python script.py``, a traceback would bury the one thing to say, so ``forward()`` installs
``pending_exit_hook`` as ``sys.excepthook`` (only over Python's default hook): an uncaught
``OfflineBatchGenerationNotFinished`` prints the jobs and "rerun the same command", and the
script exits with status 75 (``EX_TEMPFAIL``: try again later). Every other exception goes to
the hook that was there before, unchanged.
"""

from __future__ import annotations

import sys
from types import TracebackType

from datamill.errors import OfflineBatchGenerationNotFinished


def install_pending_exit_hook() -> None:
    """Make ``pending_exit_hook`` the ``sys.excepthook`` unless someone installed their own."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = pending_exit_hook


def pending_exit_hook(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    """Print an uncaught ``OfflineBatchGenerationNotFinished`` as a short message and exit 75."""
    if not isinstance(error, OfflineBatchGenerationNotFinished):
        sys.__excepthook__(kind, error, traceback)
        return
    sys.stderr.write(format_pending(error) + "\n")
    sys.stderr.flush()
    sys.exit(error.exit_code)


def format_pending(error: OfflineBatchGenerationNotFinished) -> str:
    """The jobs, one per line, then the error's own message (what happened and what to do)."""
    lines = ["datamill: offline batch jobs are still running"]
    for job in error.jobs:
        job_id = job.get("job_id") or "(not created yet)"
        lines.append(
            f"  step {job.get('step', '?')}  {job_id}  {job.get('status', '?')}  "
            f"{job.get('completed', 0)}/{job.get('total', '?')} requests done"
        )
    lines.append(str(error))
    return "\n".join(lines)
