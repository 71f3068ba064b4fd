"""Fault injection for crash tests: ``DATAMILL_FAULT=point:n`` kills the process with SIGKILL
the n-th time execution reaches ``point`` (1-based).

Points of the ledger (``datamill.core.ledger``): ``after_journal_append`` (a loop turn's
responses journaled, not yet in the request cache), ``after_append`` (a group's step-file
appends fsynced, its transaction not begun), ``mid_append`` (half a batch written: a torn
line), ``mid_group`` (inside a group's transaction: responses and spend inserted, commits not
yet), ``in_commit`` (inside it, before COMMIT), ``after_commit``, ``after_cache_put`` (a group
with responses committed), ``in_recovery`` (inside the transaction that replays the journal),
``raise_in_cache_put`` (a group's write raises, as on a full disk; see ``raise_if``),
``raise_in_journal_append`` (a loop turn's journal append raises, likewise). Offline batches (``datamill.serving.offline``): ``offline_after_intent``
(a chunk's intent recorded, nothing sent), ``offline_after_upload`` (its file uploaded, the
file id not recorded), ``offline_after_create`` (its job created, the job id not recorded).
Unset, the check is one comparison.
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("DATAMILL_FAULT", "")
_point, _, _count = _spec.partition(":")
_remaining = int(_count or 1) if _point else 0


def armed(point: str) -> bool:
    """True when this is the moment to fail at ``point`` (counts the visit)."""
    global _remaining
    if point != _point or _remaining <= 0:
        return False
    _remaining -= 1
    return _remaining == 0


def crash_if(point: str) -> None:
    if _point and armed(point):
        kill_now()


def raise_if(point: str) -> None:
    """Raise ``InjectedFault`` at ``point`` instead of killing: for failures that must reach
    the user (``raise_in_cache_put``: a request-cache write fails, as on a full disk)."""
    if _point and armed(point):
        raise InjectedFault(f"injected failure at {point}")


class InjectedFault(OSError):
    """The error ``raise_if`` raises."""


def kill_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
