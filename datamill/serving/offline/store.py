"""The offline path's records in the state database: every chunk, job and request it handled.

Two tables of the state database (created with it, ``datamill.core.state``), written only
through the run's ledger (``datamill.core.ledger``), each record in its own transaction:

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
Once the step has committed, its ``ingested`` chunks become ``collected``. The answers' spend
(at the provider's batch price) is recorded at ingestion, in the transaction that stores them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamill.core.ledger import Ledger
from datamill.core.spend import PaidResponse, insert_spend
from datamill.core.state import StateDB, store_responses
from datamill.errors import StateError
from datamill.serving.offline.provider import JobInfo

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
    """The offline tables of one state database: reads on ``reader``, writes through the
    run's ``ledger`` (None: a read-only view, for ``datamill jobs``).

    Writes block until their transaction is committed (they are a few per chunk, and the
    protocol needs each record durable before the next action), except ``ingest``, which is
    awaited so the loop keeps polling and Ctrl-C stays prompt while a large result is stored.
    """

    def __init__(self, reader: sqlite3.Connection, ledger: Ledger | None = None) -> None:
        self.conn = reader
        self.ledger = ledger

    @classmethod
    def open_readonly(cls, path: Path) -> OfflineStore:
        return cls(StateDB.open_readonly(path).conn)

    @classmethod
    def open_outside_a_run(cls, db: StateDB) -> OfflineStore:
        """For ``datamill jobs --resubmit-cancelled``, under the cache lock with no run going:
        writes go straight to ``db``, each in its own transaction."""
        store = cls(db.conn)
        store._direct = db
        return store

    _direct: StateDB | None = None

    def close(self) -> None:
        if self.ledger is None:
            self.conn.close()

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self.ledger is not None:
            return self.ledger.write_blocking(fn)
        if self._direct is None:
            raise StateError("bug: a read-only view of the offline records was asked to write")
        with self._direct.transaction() as conn:
            return fn(conn)

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

        def write(conn: sqlite3.Connection) -> None:
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

        self._write(write)

    def record_file(self, chunk_id: str, file_id: str) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE offline_batch_jobs SET state='uploaded', file_id=?, updated_at=? WHERE chunk_id=?",
                (file_id, time.time(), chunk_id),
            )
        )

    def record_create_sent(self, chunk_id: str) -> None:
        """A create is about to be sent: until its answer is recorded, the job may exist."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE offline_batch_jobs SET state='creating', updated_at=? WHERE chunk_id=?",
                (time.time(), chunk_id),
            )
        )

    def record_job(self, chunk_id: str, job: JobInfo) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE offline_batch_jobs SET state='submitted', job_id=?, status=?, completed=?, failed=?, "
                "errors=?, updated_at=? WHERE chunk_id=?",
                (
                    job.id,
                    job.status,
                    job.completed,
                    job.failed,
                    json.dumps(job.errors),
                    time.time(),
                    chunk_id,
                ),
            )
        )

    def update_job(self, chunk_id: str, job: JobInfo) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE offline_batch_jobs SET status=?, completed=?, failed=?, errors=?, updated_at=? "
                "WHERE chunk_id=?",
                (job.status, job.completed, job.failed, json.dumps(job.errors), time.time(), chunk_id),
            )
        )

    def abandon(self, chunk_id: str) -> int:
        """Nothing of this chunk reached the provider: give its requests back, attempts uncounted."""

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM offline_batch_jobs WHERE chunk_id=?", (chunk_id,))
            cursor = conn.execute(
                "UPDATE offline_requests SET state='retry', attempts=attempts-1 WHERE chunk_id=? AND state='pending'",
                (chunk_id,),
            )
            return cursor.rowcount

        return int(self._write(write))

    def reject(self, chunk_id: str, error: str, job: JobInfo | None = None) -> None:
        """The provider refused the whole chunk: its requests fail with ``error`` (no resubmission)."""

        def write(conn: sqlite3.Connection) -> None:
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

        self._write(write)

    async def ingest(
        self,
        chunk_id: str,
        job: JobInfo,
        failures: dict[str, str],
        max_attempts: int,
        answers: list[tuple[str, str]],
        paid: PaidResponse | None,
    ) -> None:
        """Record an ended chunk in one transaction: its answers into the request cache
        (``(key, cache JSON)`` pairs) with their spend, its failed requests to retry or give
        up (held as ``cancelled`` when the job was cancelled), and its outcome. The rest of the
        chunk's requests are answered (see the module docstring)."""
        assert self.ledger is not None
        run = self.ledger.run_id
        failed_state = (
            "'cancelled'"
            if job.status == "cancelled"
            else "CASE WHEN attempts>=:most THEN 'failed' ELSE 'retry' END"
        )

        def write(conn: sqlite3.Connection) -> None:
            store_responses(conn, answers)
            if paid is not None:
                insert_spend(conn, run, [paid])
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
                (job.status, job.completed, job.failed, json.dumps(job.errors), time.time(), chunk_id),
            )

        await self.ledger.write(write, cache_keys=[key for key, _ in answers])
        if paid is not None:
            self.ledger.count_run_spend(paid)

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

    def release_cancelled(self) -> int:
        """Put the requests held after cancelled jobs back in the pool (the attempt that was
        cancelled is not counted); the next run submits them. Returns how many."""
        return int(
            self._write(
                lambda conn: (
                    conn.execute(
                        "UPDATE offline_requests SET state='retry', attempts=MAX(attempts-1, 0) "
                        "WHERE state='cancelled'"
                    ).rowcount
                )
            )
        )

    def release_reported(self, step: int) -> None:
        self._write(
            lambda conn: conn.execute(
                "DELETE FROM offline_requests WHERE step=? AND state='reported'", (step,)
            )
        )

    async def finish_step(self, step: int) -> None:
        """The step committed: its failures are reported, its chunks collected."""
        assert self.ledger is not None

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE offline_requests SET state='reported' WHERE step=? AND state='failed'", (step,)
            )
            conn.execute(
                "UPDATE offline_batch_jobs SET state='collected' WHERE step=? AND state='ingested'", (step,)
            )

        await self.ledger.write(write)
