"""The offline path's records in the state database: every chunk, job and request it handled.

Two tables beside the engine's own (same SQLite file, own connection, ``synchronous=FULL``):

``offline_batch_jobs`` — one row per chunk: its intent (step, provider, base URL — never the key —,
model, size) is recorded before anything is sent, then the uploaded file id, then that a create
was sent (``creating``, at ``updated_at``), then the job id, each in its own transaction the
moment it is known. ``state`` walks ``intent`` -> ``uploaded`` -> ``creating`` -> ``submitted``
-> ``ingested``, or ``rejected`` (the provider refused the chunk); a chunk that never reached
the provider is deleted and its requests go back to the pool. ``status`` is the provider's job status (``datamill status`` lists the rows whose
status is not final).

``offline_requests`` — one row per request key handed to a chunk: the chunk that holds it, the
attempts so far and its state: ``pending`` (in its chunk: waiting while the chunk is live,
answered — its response in the request cache — once the chunk is ``ingested``), ``retry`` (its
line failed; it goes into the next chunk), ``failed`` (out of attempts: the step's batches
return ``Failed(error)`` for its rows), ``reported`` (a failure already committed as a failed
row; released on the next run so a resume retries it, like any failed row) and ``cancelled``
(its job was cancelled before answering it: it fails its row on every run, and goes back to
the pool only when the user asks, ``datamill jobs --resubmit-cancelled``). Answered requests
need no per-row write at ingestion, which keeps ingestion at the speed of the cache writes.
Once the step has committed, its ``ingested`` chunks become ``collected`` (their responses'
cost is counted by the commits that used them, once).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamill.errors import StateError
from datamill.serving.offline.provider import JobInfo

_SCHEMA = """
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

LIVE_STATES = ("intent", "uploaded", "creating", "submitted")


@dataclass
class ChunkRecord:
    chunk_id: str
    step: int
    provider: str
    base_url: str
    model: str
    n_requests: int
    n_bytes: int
    state: str
    file_id: str | None
    job_id: str | None
    status: str | None
    completed: int
    failed: int
    errors: list[str]
    created_at: float
    updated_at: float

    def as_job_dict(self) -> dict[str, Any]:
        """What ``OfflineBatchGenerationNotFinished.jobs`` and ``datamill jobs`` show."""
        return {
            "job_id": self.job_id,
            "step": self.step,
            "provider": self.provider,
            "status": self.status or self.state,
            "total": self.n_requests,
            "completed": self.completed,
            "failed": self.failed,
            "base_url": self.base_url,
            "chunk_id": self.chunk_id,
        }


_COLUMNS = (
    "chunk_id, step, provider, base_url, model, n_requests, n_bytes, state, file_id, job_id, "
    "status, completed, failed, errors, created_at, updated_at"
)


def _chunk(row: tuple) -> ChunkRecord:
    values = list(row)
    values[13] = json.loads(values[13]) if values[13] else []
    return ChunkRecord(*values)


class OfflineStore:
    """The offline tables of one state database."""

    def __init__(self, path: Path | str) -> None:
        try:
            self.conn = sqlite3.connect(
                str(path), isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            # Bulk ingestion writes up to 50,000 cache rows per transaction: a larger page cache
            # and fewer WAL checkpoints while this connection is open (it is closed after each
            # offline step, so the memory is given back).
            self.conn.execute("PRAGMA cache_size=-65536")
            self.conn.execute("PRAGMA wal_autocheckpoint=16384")
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot open the offline batch records ({exc})") from None

    def close(self) -> None:
        self.conn.close()

    def _txn(self) -> _Txn:
        return _Txn(self.conn)

    # --- chunks --------------------------------------------------------------------------

    def record_intent(
        self,
        chunk_id: str,
        *,
        step: int,
        provider: str,
        base_url: str,
        model: str,
        keys: list[str],
        n_bytes: int,
    ) -> None:
        now = time.time()
        with self._txn() as conn:
            conn.execute(
                "INSERT INTO offline_batch_jobs(chunk_id, step, provider, base_url, model, n_requests, n_bytes, "
                "state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?)",
                (chunk_id, step, provider, base_url, model, len(keys), n_bytes, now, now),
            )
            conn.executemany(
                "INSERT INTO offline_requests(key, step, chunk_id, attempts, state) VALUES (?, ?, ?, 1, 'pending') "
                "ON CONFLICT(key) DO UPDATE SET step=excluded.step, chunk_id=excluded.chunk_id, "
                "attempts=attempts+1, state='pending'",
                [(key, step, chunk_id) for key in keys],
            )

    def record_file(self, chunk_id: str, file_id: str) -> None:
        self.conn.execute(
            "UPDATE offline_batch_jobs SET state='uploaded', file_id=?, updated_at=? WHERE chunk_id=?",
            (file_id, time.time(), chunk_id),
        )

    def record_create_sent(self, chunk_id: str) -> None:
        """A create is about to be sent: until its answer is recorded, the job may exist."""
        self.conn.execute(
            "UPDATE offline_batch_jobs SET state='creating', updated_at=? WHERE chunk_id=?",
            (time.time(), chunk_id),
        )

    def record_job(self, chunk_id: str, job: JobInfo) -> None:
        self.conn.execute(
            "UPDATE offline_batch_jobs SET state='submitted', job_id=?, status=?, completed=?, failed=?, "
            "errors=?, updated_at=? WHERE chunk_id=?",
            (job.id, job.status, job.completed, job.failed, json.dumps(job.errors), time.time(), chunk_id),
        )

    def update_job(self, chunk_id: str, job: JobInfo) -> None:
        self.conn.execute(
            "UPDATE offline_batch_jobs SET status=?, completed=?, failed=?, errors=?, updated_at=? WHERE chunk_id=?",
            (job.status, job.completed, job.failed, json.dumps(job.errors), time.time(), chunk_id),
        )

    def abandon(self, chunk_id: str) -> int:
        """Nothing of this chunk reached the provider: give its requests back, attempts uncounted."""
        with self._txn() as conn:
            conn.execute("DELETE FROM offline_batch_jobs WHERE chunk_id=?", (chunk_id,))
            cursor = conn.execute(
                "UPDATE offline_requests SET state='retry', attempts=attempts-1 WHERE chunk_id=? AND state='pending'",
                (chunk_id,),
            )
            return cursor.rowcount

    def reject(self, chunk_id: str, error: str, job: JobInfo | None = None) -> None:
        """The provider refused the whole chunk: its requests fail with ``error`` (no resubmission)."""
        with self._txn() as conn:
            conn.execute(
                "UPDATE offline_batch_jobs SET state='rejected', status=COALESCE(?, status), errors=?, "
                "updated_at=? WHERE chunk_id=?",
                (
                    job.status if job else "failed",
                    json.dumps(job.errors if job else [error]),
                    time.time(),
                    chunk_id,
                ),
            )
            conn.execute(
                "UPDATE offline_requests SET state='failed', error=? WHERE chunk_id=? AND state='pending'",
                (error, chunk_id),
            )

    def ingest(
        self,
        chunk_id: str,
        job: JobInfo,
        failures: dict[str, str],
        max_attempts: int,
        answers: list[tuple[str, str]],
    ) -> None:
        """Record an ended chunk in one transaction: its answers into the request cache
        (``(key, cache JSON)`` pairs), its failed requests to retry or give up (held as
        ``cancelled`` when the job was cancelled), and its outcome. The rest of the chunk's
        requests are answered (see the module docstring)."""
        now = time.time()
        failed_state = (
            "'cancelled'"
            if job.status == "cancelled"
            else "CASE WHEN attempts>=:most THEN 'failed' ELSE 'retry' END"
        )
        with self._txn() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO request_cache(key, response, created_at) VALUES (?, ?, ?)",
                [(key, text, now) for key, text in answers],
            )
            conn.executemany(
                f"UPDATE offline_requests SET state={failed_state}, error=:error "
                "WHERE key=:key AND chunk_id=:chunk AND state='pending'",
                [
                    {"most": max_attempts, "error": error, "key": key, "chunk": chunk_id}
                    for key, error in failures.items()
                ],
            )
            conn.execute(
                "UPDATE offline_batch_jobs SET state='ingested', status=?, completed=?, failed=?, errors=?, "
                "updated_at=? WHERE chunk_id=?",
                (job.status, job.completed, job.failed, json.dumps(job.errors), now, chunk_id),
            )

    def chunks(self, step: int | None = None, states: tuple[str, ...] | None = None) -> list[ChunkRecord]:
        sql = f"SELECT {_COLUMNS} FROM offline_batch_jobs"
        where, params = [], []
        if step is not None:
            where.append("step=?")
            params.append(step)
        if states is not None:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, chunk_id"
        return [_chunk(row) for row in self.conn.execute(sql, params)]

    def known_job_ids(self) -> set[str]:
        return {
            r[0] for r in self.conn.execute("SELECT job_id FROM offline_batch_jobs WHERE job_id IS NOT NULL")
        }

    # --- requests ------------------------------------------------------------------------

    def pending_keys(self, chunk_id: str) -> set[str]:
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT key FROM offline_requests WHERE chunk_id=? AND state='pending'", (chunk_id,)
            )
        }

    def taken_keys(self) -> set[str]:
        """Keys not to put in a new chunk: in a chunk (live or answered), failed for good, or
        held after a cancelled job."""
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT key FROM offline_requests WHERE state IN ('pending', 'failed', 'cancelled')"
            )
        }

    def has_retry(self, step: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM offline_requests WHERE step=? AND state='retry' LIMIT 1", (step,)
        ).fetchone()
        return row is not None

    def failures(self, step: int) -> dict[str, str]:
        return {
            r[0]: r[1]
            for r in self.conn.execute(
                "SELECT key, error FROM offline_requests WHERE step=? AND state IN ('failed', 'cancelled')",
                (step,),
            )
        }

    def answered_keys(self, step: int) -> set[str]:
        """Keys answered by this step's jobs whose cost no commit has counted yet."""
        return {
            r[0]
            for chunk in self.chunks(step, ("ingested",))
            for r in self.conn.execute(
                "SELECT key FROM offline_requests WHERE chunk_id=? AND state='pending'", (chunk.chunk_id,)
            )
        }

    def release_cancelled(self) -> int:
        """Put the requests held after cancelled jobs back in the pool (the attempt that was
        cancelled is not counted); the next run submits them. Returns how many."""
        cursor = self.conn.execute(
            "UPDATE offline_requests SET state='retry', attempts=MAX(attempts-1, 0) WHERE state='cancelled'"
        )
        return cursor.rowcount

    def release_reported(self, step: int) -> None:
        self.conn.execute("DELETE FROM offline_requests WHERE step=? AND state='reported'", (step,))

    def finish_step(self, step: int) -> None:
        """The step committed: failures are reported, answered responses counted."""
        with self._txn() as conn:
            conn.execute(
                "UPDATE offline_requests SET state='reported' WHERE step=? AND state='failed'", (step,)
            )
            conn.execute(
                "UPDATE offline_batch_jobs SET state='collected' WHERE step=? AND state='ingested'", (step,)
            )

    def request_counts(self, step: int) -> dict[str, int]:
        return {
            r[0]: int(r[1])
            for r in self.conn.execute(
                "SELECT state, COUNT(*) FROM offline_requests WHERE step=? GROUP BY state", (step,)
            )
        }


class _Txn:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.conn.execute("ROLLBACK" if kind is not None else "COMMIT")
