"""A ledger as a run holds it, for tests that drive the dispatcher or the offline path directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from datamill.core.ledger import Ledger


@asynccontextmanager
async def running_ledger(state_path: Path) -> AsyncIterator[Ledger]:
    """Recover, start the writer, and stop and close it afterwards (as ``forward`` does)."""
    ledger = Ledger(state_path)
    try:
        ledger.recover(ledger.db.start_run(0))
        ledger.start()
        try:
            yield ledger
        finally:
            await ledger.stop()
    finally:
        ledger.close()
