"""The ledger's writer on a real SQLite file: failures reach their callers, nothing waits for ever."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from helpers.ledger_runs import running_ledger

from datamill.errors import StateError


def _fail_like_a_full_disk(conn: sqlite3.Connection) -> None:
    raise sqlite3.OperationalError("database or disk is full")


def _refuse(conn: sqlite3.Connection) -> None:
    raise ValueError("this record is refused")


async def test_a_failed_write_stops_the_ledger_and_later_records_raise_instead_of_waiting(tmp_path: Path):
    with pytest.raises(StateError, match="disk is full"):
        async with running_ledger(tmp_path / "l.state.db") as ledger:
            with pytest.raises(StateError, match=r"l\.state\.db.*disk is full.*Free disk space"):
                await ledger.write(_fail_like_a_full_disk)
            loop = asyncio.get_running_loop()
            blocked = loop.run_in_executor(None, ledger.write_blocking, lambda conn: None)
            with pytest.raises(StateError):
                await asyncio.wait_for(blocked, timeout=5)  # raises at once, never hangs
            with pytest.raises(StateError):
                await ledger.flush()
    # stop() raised the write error: the run that owns the ledger ends with it


async def test_a_refused_record_reaches_its_caller_and_the_ledger_carries_on(tmp_path: Path):
    async with running_ledger(tmp_path / "l.state.db") as ledger:
        with pytest.raises(ValueError, match="refused"):
            await ledger.write(_refuse)
        ledger.record_response("a" * 64, {"texts": ["kept"]}, None)
        await ledger.flush()
        assert ledger.error is None and ledger.get("a" * 64) == {"texts": ["kept"]}
