"""The state database on a real SQLite file: batch commits, positions, failures, rewinds."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from datamill.core.spend import PaidResponse, insert_spend
from datamill.core.state import BatchCommit, StateDB, insert_commits, store_responses
from datamill.errors import StateError


def commit(step: int, in_row_end: int, out_rows: int, *, failures=(), drops=None) -> BatchCommit:
    return BatchCommit(
        step=step,
        in_row_end=in_row_end,
        in_position=in_row_end * 100,
        out_position=in_row_end * 1000,
        out_rows=out_rows,
        failures=list(failures),
        drops=dict(drops or {}),
    )


def commit_batches(db: StateDB, commits: list[tuple[int, BatchCommit]]) -> None:
    """What the ledger does with a group's commit records: one transaction."""
    with db.transaction() as conn:
        insert_commits(conn, commits)


@pytest.fixture
def db(tmp_path: Path):
    state = StateDB(tmp_path / "p.state.db")
    state.save_step(0, "Gen", "fp0", {"k": 1}, "running")
    state.save_step(1, "Judge", "fp1", {"k": 2}, "running")
    yield state
    state.close()


def test_a_step_without_commits_starts_at_zero(db: StateDB) -> None:
    position = db.load_position(0)
    assert (position.seq, position.in_rows, position.in_position, position.out_position) == (0, 0, 0, 0)


def test_commits_survive_reopening_and_the_last_one_is_the_position(db: StateDB, tmp_path: Path) -> None:
    commit_batches(db, [(1, commit(0, 4, 4)), (2, commit(0, 8, 3, failures=[(5, "boom")]))])
    with db.transaction() as conn:
        insert_spend(
            conn, 1, [PaidResponse(0, False, "m", 10, 2, 0.5), PaidResponse(0, True, "m", 1, 1, None)]
        )
    db.close()
    reopened = StateDB(tmp_path / "p.state.db")
    try:
        position = reopened.load_position(0)
        assert (position.seq, position.in_rows, position.in_position, position.out_position) == (
            2,
            8,
            800,
            8000,
        )
        assert position.out_rows == 7
        totals = reopened.step_totals(0)
        assert totals["rows_in"] == 8 and totals["rows_out"] == 7 and totals["rows_failed"] == 1
        assert totals["prompt_tokens"] == 11 and totals["batches"] == 2
        assert totals["cost_usd"] is None  # one paid response has no known price
        assert totals["spend"].requests == 2 and totals["spend"].priced_cost_usd == 0.5
        assert reopened.failures(0) == [(5, "boom")]
        assert reopened.first_failed_row(0) == 5
    finally:
        reopened.close()


def test_a_duplicate_commit_is_refused_and_leaves_nothing_half_written(db: StateDB) -> None:
    commit_batches(db, [(1, commit(0, 3, 3))])
    with pytest.raises(sqlite3.IntegrityError):
        commit_batches(db, [(2, commit(0, 6, 3, failures=[(4, "x")])), (1, commit(0, 9, 3))])
    assert db.load_position(0).seq == 1
    assert db.failures(0) == []


def test_rewind_keeps_earlier_commits_and_forgets_later_failures_and_drops(db: StateDB) -> None:
    commit_batches(
        db,
        [
            (1, commit(0, 4, 3, failures=[(1, "early")], drops={"short": 1})),
            (2, commit(0, 8, 3, failures=[(6, "late")])),
            (3, commit(0, 12, 4)),
        ],
    )
    commit_batches(db, [(1, commit(1, 5, 5)), (2, commit(1, 10, 5))])

    db.rewind_steps({0: 1, 1: 0})

    assert db.load_position(0).seq == 1 and db.load_position(0).in_rows == 4
    assert db.failures(0) == [(1, "early")]
    assert db.drop_reasons(0) == {"short": 1}
    assert db.load_position(1).seq == 0
    assert db.step_totals(1)["rows_out"] == 0
    assert db.load_step(0)["status"] == "pending" and db.load_step(1)["status"] == "pending"


def test_rewind_to_zero_forgets_drop_counts(db: StateDB) -> None:
    commit_batches(db, [(1, commit(0, 4, 3, drops={"short": 1}))])
    db.rewind_steps({0: 0})
    assert db.drop_reasons(0) == {}


def test_commit_lookup_by_input_row_and_by_output_rows(db: StateDB) -> None:
    commit_batches(db, [(1, commit(0, 4, 2)), (2, commit(0, 8, 4)), (3, commit(0, 12, 4))])
    assert db.commit_for_input_row(0, 0) == 0
    assert db.commit_for_input_row(0, 5) == 1
    assert db.commit_for_input_row(0, 8) == 2
    assert db.commit_for_input_row(0, 100) == 3
    assert db.commit_for_output_rows(0, 1) == 0
    assert db.commit_for_output_rows(0, 6) == 2
    assert db.commit_for_output_rows(0, 9) == 2


def test_fingerprint_documents_round_trip(db: StateDB) -> None:
    db.save_step(0, "Gen", "fp-new", {"config": {"user_prompt": "hi"}}, "pending")
    stored = db.load_step(0)
    assert stored == {
        "name": "Gen",
        "fingerprint": "fp-new",
        "doc": {"config": {"user_prompt": "hi"}},
        "status": "pending",
    }
    assert db.step_count() == 2
    assert db.load_step(7) is None


def test_a_database_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.state.db"
    StateDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="newer datamill"):
        StateDB(path)


def test_a_schema_1_database_is_upgraded_keeping_every_cached_response(tmp_path: Path) -> None:
    path = tmp_path / "p.state.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE request_cache (key TEXT PRIMARY KEY, response TEXT NOT NULL, created_at REAL NOT NULL)
            WITHOUT ROWID;
        INSERT INTO request_cache VALUES ('k1', '{"texts": ["a"]}', 1.0), ('k2', '{"texts": ["b"]}', 2.0);
        """
    )
    conn.commit()
    conn.close()
    db = StateDB(path)
    try:
        assert db.cached_response("k1") == {"texts": ["a"]} and db.cached_response("k2") == {"texts": ["b"]}
        with db.transaction() as conn:
            store_responses(conn, [("k1", '{"texts": ["again"]}')])  # the key stays unique
        assert db.cached_count() == 2 and db.cached_response("k1") == {"texts": ["again"]}
    finally:
        db.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name='request_cache'").fetchone()[0]
        assert "WITHOUT ROWID" not in sql


def test_a_file_that_is_not_sqlite_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "p.state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match=str(path)):
        StateDB(path)


def test_request_cache_stores_and_returns_responses_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "p.state.db"
    db = StateDB(path)
    with db.transaction() as conn:
        store_responses(conn, [("k1", '{"texts": ["héllo"]}'), ("k2", '{"texts": ["b"]}')])
    db.close()
    again = StateDB.open_readonly(path)
    try:
        assert again.cached_response("k1") == {"texts": ["héllo"]}
        assert again.cached_keys(["k2", "k3"]) == {"k2"}
        assert again.cached_response("k3") is None
        assert again.cached_count() == 2
    finally:
        again.close()


def test_a_schema_2_database_keeps_the_spend_its_commits_counted(tmp_path: Path) -> None:
    path = tmp_path / "p.state.db"
    StateDB(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TABLE spend")
        conn.execute(
            "INSERT INTO commits VALUES (0, 1, 4, 400, 4000, 4, 0, 0, 100, 20, 0.25, 1.0), "
            "(0, 2, 8, 800, 8000, 4, 0, 0, 50, 10, 0.125, 2.0)"
        )
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        conn.commit()
    db = StateDB(path)
    try:
        totals = db.step_totals(0)
        assert (totals["prompt_tokens"], totals["completion_tokens"], totals["cost_usd"]) == (150, 30, 0.375)
    finally:
        db.close()
