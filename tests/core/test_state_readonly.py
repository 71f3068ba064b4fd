"""``StateDB.open_readonly``: what ``datamill status`` reads a cache with while a run writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from datamill.core.state import BatchCommit, StateDB, insert_commits
from datamill.errors import StateError


def commit(state: StateDB, seq: int, rows: int) -> None:
    with state.transaction() as conn:
        insert_commits(conn, [(seq, BatchCommit(0, seq * rows, seq * 100, seq * 90, rows, [], {}))])


def test_a_readonly_connection_sees_each_commit_and_reads_during_a_write(tmp_path: Path) -> None:
    writer = StateDB(tmp_path / "x.state.db")
    writer.save_step(0, "Gen", "fp", {"format": "jsonl"}, "running")
    commit(writer, 1, 10)
    reader = StateDB.open_readonly(tmp_path / "x.state.db")
    assert reader.step_totals(0)["rows_in"] == 10
    writer.conn.execute("BEGIN IMMEDIATE")  # a run holding the write lock
    assert reader.load_position(0).out_rows == 10
    writer.conn.execute("ROLLBACK")
    commit(writer, 2, 10)
    assert reader.step_totals(0)["rows_in"] == 20
    with pytest.raises(sqlite3.OperationalError):
        reader.set_step_status(0, "done")
    reader.close()
    writer.close()


def test_a_missing_or_foreign_file_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist"):
        StateDB.open_readonly(tmp_path / "absent.state.db")
    (tmp_path / "junk.state.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateError, match="cannot read"):
        StateDB.open_readonly(tmp_path / "junk.state.db")
