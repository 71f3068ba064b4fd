"""The state database: one SQLite file in WAL mode beside the step files.

It holds what resume depends on — step fingerprints, batch commits, failed rows, the request
cache and the spend. This module is its schema and its queries; during a run every write goes
through the ledger (``datamill.core.ledger``), which owns the one writer connection, and
readers (``status``, ``export``, the web page) open it read-only (``open_readonly``).

WAL with ``synchronous=NORMAL``: a killed process loses no commit; a power loss may roll back
the last few (the database stays consistent, and resume truncates each step file to its last
surviving commit). Step files themselves are fsynced before each commit. A step's position
is its last commit's row, so resume costs one indexed lookup however long the run was.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from datamill.core.spend import SPEND_TABLE, Spend, read_spend
from datamill.errors import StateError

#: 2: the request cache is a rowid table with a unique key index (was WITHOUT ROWID: every
#: insert rewrote a random page of full rows; now only the small index is random).
#: 3: spend is recorded per paid response in ``spend`` (``datamill.core.spend``); the
#: commits' token and cost columns are no longer written.
SCHEMA_VERSION = 3

#: SQLite page cache per connection, in KiB. Every access is by key, and the OS page cache
#: serves a miss in microseconds; a small cap keeps a run's memory flat however large the
#: request cache grows (SQLite's default, 2 MiB per connection, fills slowly and reads as growth).
PAGE_CACHE_KIB = 512

#: WAL pages before a commit checkpoints them into the database (SQLite's default is 1,000).
#: Random-key cache inserts dirty the same index pages again and again; a longer WAL copies
#: each one back once per checkpoint instead of many times (~40% less CPU per cached response).
WAL_AUTOCHECKPOINT_PAGES = 10_000

_REQUEST_CACHE_TABLE = """
CREATE TABLE IF NOT EXISTS request_cache (
    key TEXT NOT NULL UNIQUE,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)"""

#: The Batch API path's records (``datamill.serving.offline.store`` reads and writes them).
_OFFLINE_TABLES = """
CREATE TABLE IF NOT EXISTS offline_batch_jobs (
    chunk_id TEXT PRIMARY KEY,
    step INTEGER NOT NULL,
    provider TEXT NOT NULL,
    base_url TEXT NOT NULL,
    model TEXT NOT NULL,
    n_requests INTEGER NOT NULL,
    n_bytes INTEGER NOT NULL,
    state TEXT NOT NULL,
    file_id TEXT,
    job_id TEXT,
    status TEXT,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    errors TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_batch_jobs_step ON offline_batch_jobs(step, state);
CREATE TABLE IF NOT EXISTS offline_requests (
    key TEXT PRIMARY KEY,
    step INTEGER NOT NULL,
    chunk_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    state TEXT NOT NULL,
    error TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS offline_requests_chunk ON offline_requests(chunk_id, state);
"""

_SCHEMA = (
    _REQUEST_CACHE_TABLE
    + """;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    fingerprint_doc TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commits (
    step INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    in_row_end INTEGER NOT NULL,
    in_position INTEGER NOT NULL,
    out_position INTEGER NOT NULL,
    out_rows INTEGER NOT NULL,
    rows_failed INTEGER NOT NULL,
    rows_dropped INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    committed_at REAL NOT NULL,
    PRIMARY KEY (step, seq)
);
CREATE TABLE IF NOT EXISTS failures (
    step INTEGER NOT NULL,
    input_row INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL,
    PRIMARY KEY (step, input_row)
);
CREATE TABLE IF NOT EXISTS drops (
    step INTEGER NOT NULL,
    reason TEXT NOT NULL,
    rows INTEGER NOT NULL,
    PRIMARY KEY (step, reason)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    summary TEXT
);
"""
    + SPEND_TABLE
    + ";"
    + _OFFLINE_TABLES
)


_COMMIT_COLUMNS = (
    "step, seq, in_row_end, in_position, out_position, out_rows, rows_failed, rows_dropped, "
    "prompt_tokens, completion_tokens, cost_usd, committed_at"
)
#: ``?1`` is a JSON array of commit records, each an array in ``_COMMIT_COLUMNS`` order.
_INSERT_COMMITS_FROM_JSON = (
    f"INSERT INTO commits({_COMMIT_COLUMNS}) SELECT "
    + ", ".join(f"json_extract(value, '$[{index}]')" for index in range(12))
    + " FROM json_each(?1)"
)


@dataclass(frozen=True)
class StepPosition:
    """Where a step stands after its last commit (all zero before the first)."""

    seq: int = 0
    in_rows: int = 0
    in_position: int = 0
    out_position: int = 0
    out_rows: int = 0


@dataclass(frozen=True)
class BatchCommit:
    """One batch's record: the input consumed and the output appended, committed atomically."""

    step: int
    in_row_end: int
    in_position: int
    out_position: int
    out_rows: int
    failures: list[tuple[int, str]]
    drops: dict[str, int]

    @property
    def rows_dropped(self) -> int:
        return sum(self.drops.values())


class StateDB:
    """One connection to ``{prefix}.state.db``; not shared between threads."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={synchronous}")
            self.conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self.conn.executescript(_SCHEMA)
            self._check_version()
            self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{path}: cannot open the state database ({exc}); if the file is damaged, move the "
                "cache directory aside and rerun (the step files stay readable)"
            ) from None

    @classmethod
    def open_readonly(cls, path: Path) -> StateDB:
        """A connection that writes nothing and takes no lock, for ``datamill status``.

        WAL lets it read consistent snapshots while a run is committing; methods that write
        raise ``sqlite3.OperationalError`` on it.
        """
        if not path.is_file():
            raise StateError(f"{path} does not exist: no run has used this cache prefix yet")
        db = cls.__new__(cls)
        db.path = path
        try:
            db.conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30.0
            )
            db._check_version(record=False)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot read the state database ({exc})") from None
        return db

    def _check_version(self, *, record: bool = True) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None and record:
            self.conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif row is not None and int(row[0]) > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} was written by a newer datamill (schema {row[0]}); upgrade datamill"
            )

    def _upgrade(self) -> None:
        """Bring a database written by an older datamill to ``SCHEMA_VERSION``, keeping every
        row: one transaction, so a kill mid-way leaves the old schema whole."""
        version = int(self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
        if version >= SCHEMA_VERSION:
            return
        with self.transaction() as conn:
            version = int(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
            if version < 3:  # spend so far: what the commits counted, as one row per step
                conn.execute(
                    "INSERT INTO spend(run, step, batch_api, model, requests, prompt_tokens, completion_tokens, "
                    "cost_usd, unpriced, recorded_at) SELECT NULL, step, 0, '', 0, SUM(prompt_tokens), "
                    "SUM(completion_tokens), SUM(cost_usd), 0, MAX(committed_at) FROM commits GROUP BY step "
                    "HAVING SUM(prompt_tokens) + SUM(completion_tokens) > 0"
                )
            if version < 2:  # another connection may have upgraded meanwhile
                conn.execute("ALTER TABLE request_cache RENAME TO request_cache_v1")
                conn.execute(_REQUEST_CACHE_TABLE)
                conn.execute(
                    "INSERT INTO request_cache(key, response, created_at) "
                    "SELECT key, response, created_at FROM request_cache_v1"
                )
                conn.execute("DROP TABLE request_cache_v1")
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (during a run, only the ledger's writer opens one)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- steps -------------------------------------------------------------------------

    def load_step(self, step: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT name, fingerprint, fingerprint_doc, status FROM steps WHERE step=?", (step,)
        ).fetchone()
        if row is None:
            return None
        return {"name": row[0], "fingerprint": row[1], "doc": json.loads(row[2]), "status": row[3]}

    def save_step(self, step: int, name: str, fingerprint: str, doc: dict[str, Any], status: str) -> None:
        self.conn.execute(
            "INSERT INTO steps(step, name, fingerprint, fingerprint_doc, status, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(step) DO UPDATE SET name=excluded.name, "
            "fingerprint=excluded.fingerprint, fingerprint_doc=excluded.fingerprint_doc, "
            "status=excluded.status, updated_at=excluded.updated_at",
            (step, name, fingerprint, json.dumps(doc, sort_keys=True, default=str), status, time.time()),
        )

    def set_step_status(self, step: int, status: str) -> None:
        self.conn.execute("UPDATE steps SET status=?, updated_at=? WHERE step=?", (status, time.time(), step))

    def step_count(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(step), -1) + 1 FROM steps").fetchone()
        return int(row[0])

    # --- commits -----------------------------------------------------------------------

    def load_position(self, step: int) -> StepPosition:
        row = self.conn.execute(
            "SELECT seq, in_row_end, in_position, out_position FROM commits WHERE step=? "
            "ORDER BY seq DESC LIMIT 1",
            (step,),
        ).fetchone()
        if row is None:
            return StepPosition()
        out_rows = self.conn.execute("SELECT COALESCE(SUM(out_rows), 0) FROM commits WHERE step=?", (step,))
        return StepPosition(row[0], row[1], row[2], row[3], int(out_rows.fetchone()[0]))

    def rewind_steps(self, rewinds: dict[int, int]) -> None:
        """Forget every commit of each step past its kept sequence number, in one transaction.

        ``rewinds`` maps step → last commit ``seq`` to keep (0 keeps none). Failures and drop
        counts recorded by the forgotten commits go with them.
        """
        with self.transaction() as conn:
            for step, keep_seq in rewinds.items():
                kept_rows = conn.execute(
                    "SELECT COALESCE(MAX(in_row_end), 0) FROM commits WHERE step=? AND seq<=?",
                    (step, keep_seq),
                ).fetchone()[0]
                conn.execute("DELETE FROM commits WHERE step=? AND seq>?", (step, keep_seq))
                conn.execute("DELETE FROM failures WHERE step=? AND input_row>=?", (step, kept_rows))
                if keep_seq == 0:
                    conn.execute("DELETE FROM drops WHERE step=?", (step,))
                conn.execute(
                    "UPDATE steps SET status='pending', updated_at=? WHERE step=?", (time.time(), step)
                )

    def commit_for_input_row(self, step: int, input_row: int) -> int:
        """The ``seq`` of the last commit that ends at or before ``input_row`` (0 if none)."""
        row = self.conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM commits WHERE step=? AND in_row_end<=?", (step, input_row)
        ).fetchone()
        return int(row[0])

    def commit_for_output_rows(self, step: int, out_rows: int) -> int:
        """The ``seq`` of the last commit whose cumulative output is at most ``out_rows``."""
        seq = 0
        total = 0
        for commit_seq, rows in self.conn.execute(
            "SELECT seq, out_rows FROM commits WHERE step=? ORDER BY seq", (step,)
        ):
            if total + rows > out_rows:
                break
            total += rows
            seq = commit_seq
        return seq

    def step_totals(self, step: int) -> dict[str, Any]:
        """The step's committed rows, and its spend across every run (``datamill.core.spend``)."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(MAX(in_row_end), 0), COALESCE(SUM(out_rows), 0), "
            "COALESCE(SUM(rows_dropped), 0) FROM commits WHERE step=?",
            (step,),
        ).fetchone()
        spend = self.spend(step=step)
        return {
            "batches": row[0],
            "rows_in": row[1],
            "rows_out": row[2],
            "rows_dropped": row[3],
            "rows_failed": self.failure_count(step),
            "spend": spend,
            "prompt_tokens": spend.prompt_tokens,
            "completion_tokens": spend.completion_tokens,
            "cost_usd": spend.cost_usd,
        }

    def spend(self, *, step: int | None = None, run: int | None = None) -> Spend:
        """What the provider billed for ``step`` (None: all) in ``run`` (None: every run)."""
        return read_spend(self.conn, step=step, run=run)

    # --- the request cache (reads; the ledger writes) -------------------------------------

    def cached_response(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT response FROM request_cache WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def cached_responses(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached responses of ``keys`` (absent ones left out): one query per 500 keys."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, response FROM request_cache WHERE key IN ({marks})"
            found.update((key, orjson.loads(text)) for key, text in self.conn.execute(query, part))
        return found

    def cached_keys(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` are cached: one query per 500 keys."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0] for r in self.conn.execute(f"SELECT key FROM request_cache WHERE key IN ({marks})", part)
            )
        return found

    def cached_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM request_cache").fetchone()[0])

    def failure_count(self, step: int) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM failures WHERE step=?", (step,)).fetchone()[0])

    def failures(self, step: int, limit: int | None = None) -> list[tuple[int, str]]:
        sql = "SELECT input_row, error FROM failures WHERE step=? ORDER BY input_row"
        params: tuple[Any, ...] = (step,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (step, limit)
        return [(int(r[0]), str(r[1])) for r in self.conn.execute(sql, params)]

    def first_failed_row(self, step: int) -> int | None:
        row = self.conn.execute("SELECT MIN(input_row) FROM failures WHERE step=?", (step,)).fetchone()
        return None if row[0] is None else int(row[0])

    def drop_reasons(self, step: int) -> dict[str, int]:
        return {
            r[0]: int(r[1]) for r in self.conn.execute("SELECT reason, rows FROM drops WHERE step=?", (step,))
        }

    # --- runs --------------------------------------------------------------------------

    def start_run(self, pid: int) -> int:
        cursor = self.conn.execute(
            "INSERT INTO runs(pid, started_at, status) VALUES (?, ?, 'running')", (pid, time.time())
        )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE runs SET finished_at=?, status=?, summary=? WHERE id=?",
            (time.time(), status, json.dumps(summary, default=str), run_id),
        )


#: One statement stores a group of responses: ``?2`` is a JSON array of ``[key, response text]``.
_PUT_FROM_JSON = (
    "INSERT OR REPLACE INTO request_cache(key, response, created_at) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?1 FROM json_each(?2)"
)


def store_responses(conn: sqlite3.Connection, items: list[tuple[str, str]]) -> None:
    """Store ``(key, response JSON)`` pairs in the request cache, inside the caller's transaction.

    The pairs travel as one JSON array bound to one ``INSERT ... SELECT FROM json_each``: a
    single SQLite call, during which the writer thread holds no GIL. A thread beside a busy
    event loop waits for the GIL each time it wants it back (up to the interpreter's 5 ms
    switch interval), so one call per group instead of one per row keeps its writes prompt.
    """
    if items:
        payload = orjson.dumps([[key, text] for key, text in items]).decode()
        conn.execute(_PUT_FROM_JSON, (time.time(), payload))


def insert_commits(conn: sqlite3.Connection, commits: list[tuple[int, BatchCommit]]) -> None:
    """Record several batches (``(seq, commit)`` pairs) inside the caller's transaction.

    Each batch's record is complete on its own, so committing several together keeps each
    atomic while paying one fsync for all of them. One statement for all the records, for the
    same reason as ``store_responses``.
    """
    now = time.time()
    records = [
        (
            commit.step,
            seq,
            commit.in_row_end,
            commit.in_position,
            commit.out_position,
            commit.out_rows,
            len(commit.failures),
            commit.rows_dropped,
            0,
            0,
            0.0,
            now,
        )
        for seq, commit in commits
    ]
    conn.execute(_INSERT_COMMITS_FROM_JSON, (json.dumps(records),))
    failures = [(c.step, row, error, now) for _, c in commits for row, error in c.failures]
    if failures:
        conn.executemany(
            "INSERT OR REPLACE INTO failures(step, input_row, error, failed_at) VALUES (?, ?, ?, ?)",
            failures,
        )
    drops: dict[tuple[int, str], int] = {}
    for _, commit in commits:
        for reason, count in commit.drops.items():
            drops[commit.step, reason] = drops.get((commit.step, reason), 0) + count
    for (step, reason), count in drops.items():
        conn.execute(
            "INSERT INTO drops(step, reason, rows) VALUES (?, ?, ?) "
            "ON CONFLICT(step, reason) DO UPDATE SET rows = rows + excluded.rows",
            (step, reason, count),
        )
