"""The ledger: the one owner of every durable write of a run.

Everything that resume depends on is written here, by one writer thread over one SQLite
connection, and nowhere else:

- **a response** is appended to the response journal in the event-loop turn it arrives
  (``record_response``; from then on a ``kill -9`` cannot lose it), then stored in the request
  cache together with its spend (``datamill.core.spend``) in one transaction;
- **a batch commit** (``StepLog.submit``): the batch's rows are appended to the step file and
  fsynced, then its commit record — input range, byte offset reached, rows written, failed
  and dropped — goes into the same kind of transaction;
- **offline records** (``write``): Batch API chunk and job records and result ingestion, each
  in its own transaction, in queue order with everything else.

One grouping policy: the writer takes everything queued at once, when ``GROUP_ITEMS`` items
(responses plus batch rows) wait, when someone waits for the writes (backpressure, a step's
end, an offline record), or ``GROUP_DELAY_SECONDS`` after the first of them. A group is: append
and fsync its batches, then one transaction for its responses, their spend and its commits.

**Why a kill loses nothing**: before the journal append the response had not reached us (it
was on the wire, which no client can see); after it, the next run's ``recover`` replays it.
A kill after a step-file append but before its transaction leaves bytes past the last
commit, which ``open_step`` cuts off; a kill inside the transaction rolls it back, same case.

**Recovery** is one explicit call, ``recover()``, at the start of a run under the cache lock:
it replays the journal (responses and spend) before anything else is written. The owner of the
ledger (``datamill.pipeline.base``) then reconciles the steps (``step_file_lost_commits``
detects a step file shorter than its last commit) and opens each step file at its last commit.

Threads and connections: the writer thread is started by ``start`` and stopped by ``stop``,
which drains the queue first, so nothing touches the writer connection after it is closed;
``close`` closes the connections last. Reads on the event loop (``get``) use their own
read-only-in-practice connection and the key filter, which learns every stored key from the
writer before the loop forgets the response.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from datamill.core import faults
from datamill.core.keyfilter import KeyFilter
from datamill.core.response_journal import ResponseJournal, read_journal
from datamill.core.rowfiles import Row, RowWriter, open_writer, stored_position
from datamill.core.spend import PaidResponse, Spend, insert_spend
from datamill.core.state import BatchCommit, StateDB, insert_commits, store_responses
from datamill.errors import StateError

log = logging.getLogger(__name__)

#: A group is written once this many items (responses + batch input rows) wait, or
#: ``GROUP_DELAY_SECONDS`` after the first of them, unless someone waits for it sooner. The
#: journal already holds the responses, so waiting costs no safety, and a group spreads the
#: transaction's fixed cost (and the writer's waits for the GIL) over many rows.
GROUP_ITEMS = 512
GROUP_DELAY_SECONDS = 0.025


@dataclass
class PendingBatch:
    """A computed batch waiting to be committed."""

    seq: int
    rows: list[Row]
    in_row_end: int
    in_position: int
    failures: list[tuple[int, str]]
    drops: dict[str, int]


_AnyFuture = asyncio.Future[Any] | concurrent.futures.Future[Any]


@dataclass
class _Group:
    responses: list[tuple[str, str, PaidResponse | None]] = field(default_factory=list)
    per_journal: list[int] = field(default_factory=lambda: [0, 0])
    batches: list[tuple[StepLog, PendingBatch]] = field(default_factory=list)
    writes: list[tuple[Callable[[sqlite3.Connection], Any], list[str], _AnyFuture]] = field(
        default_factory=list
    )
    last_seq: int = 0


class Ledger:
    """The run's writer: see the module docstring for the protocol."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path
        self.db = StateDB(state_path, synchronous="NORMAL")
        self._reader = StateDB(state_path, synchronous="NORMAL")
        self.run_id: int | None = None
        self.error: BaseException | None = None
        self.on_error: list[Callable[[BaseException], None]] = []
        #: Spend of this run's paid responses per step (None: no step), counted as they arrive.
        self.run_spend: dict[int | None, Spend] = {}
        self._filter: KeyFilter | None = None
        self._journal: ResponseJournal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._this_turn: list[tuple[str, str, PaidResponse | None]] = []
        self._unwritten: dict[str, str] = {}
        self._cond = threading.Condition()
        self._queue = _Group()
        self._queued_items = 0
        self._first_queued = 0.0
        self._enqueued_seq = 0
        self._written_seq = 0
        self._urgent_until = 0
        self._taken_seq = 0  # the last sequence number the writer took (writer thread only)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- start and recovery (the owner's thread, before ``start``) ---------------------------

    def recover(self, run_id: int) -> int:
        """Replay what a killed run left in the response journal (responses and their spend)
        into the request cache, then open the journal for this run; the count replayed."""
        self.run_id = run_id
        entries = read_journal(self.path)
        if entries:
            # The journal is emptied only when it rotates, so most of its entries may be stored
            # already: their spend was recorded with them, and must not be counted again.
            stored = self.db.cached_keys([key for key, _, _ in entries])
            fresh = {key: (text, paid) for key, text, paid in entries if key not in stored}
            with self.db.transaction() as conn:
                store_responses(conn, [(key, text) for key, (text, _) in fresh.items()])
                insert_spend(conn, None, [paid for _, paid in fresh.values() if paid is not None])
                faults.crash_if("in_recovery")
            log.info("recovered %d response(s) from the response journal", len(entries))
        self._journal = ResponseJournal(self.path)
        return len(entries)

    def start(self) -> None:
        """Start the writer thread; from now on only it writes (call inside the run's loop)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer_main, name="datamill-ledger", daemon=True)
        self._thread.start()

    def open_step(self, step: int, path: Path, fmt: str) -> StepLog:
        """The step's file opened at its last commit (later bytes, a killed group's, cut off)."""
        position = self.db.load_position(step)
        return StepLog(self, step, open_writer(path, fmt, position.out_position), position.in_rows)

    # --- reads (the event loop) -----------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response of ``key``, from memory until its write lands, else SQLite."""
        text = self._unwritten.get(key)
        if text is not None:
            return orjson.loads(text)
        key_filter = self._filter
        if key_filter is not None and not key_filter.might_contain(key):
            return None
        return self._reader.cached_response(key)

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The stored responses of ``keys`` (absent ones left out), in bulk."""
        found = {key: orjson.loads(self._unwritten[key]) for key in keys if key in self._unwritten}
        found.update(self._reader.cached_responses([key for key in keys if key not in found]))
        return found

    def cached_keys(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have a stored response (the offline path's bulk check)."""
        found = {key for key in keys if key in self._unwritten}
        return found | self._reader.cached_keys([key for key in keys if key not in found])

    @property
    def reader(self) -> StateDB:
        """A connection for reads on the loop's thread; never written through."""
        return self._reader

    # --- writes (the event loop) ----------------------------------------------------------

    def record_response(self, key: str, response: dict[str, Any], paid: PaidResponse | None) -> None:
        """Take a response that just arrived (``paid``: its spend, None for a free one); it is
        journaled at the end of this loop turn and stored by the writer."""
        if not self._this_turn:
            asyncio.get_running_loop().call_soon(self._end_turn)
        text = orjson.dumps(response).decode()
        self._this_turn.append((key, text, paid))
        self._unwritten[key] = text
        if paid is not None:
            self.count_run_spend(paid)

    def count_run_spend(self, paid: PaidResponse) -> None:
        """Add ``paid`` to this run's tally (what the live display and the budget read)."""
        self.run_spend.setdefault(paid.step, Spend()).add(paid)

    def _end_turn(self) -> None:
        entries, self._this_turn = self._this_turn, []
        if not entries or self._journal is None:
            return
        try:
            faults.raise_if("raise_in_journal_append")
            journal = self._journal.append(entries)
        except OSError as exc:  # a full disk: the responses live in memory only; stop sending
            self._fail(self._write_error(exc, self._journal.active_path))
            return
        faults.crash_if("after_journal_append")
        with self._cond:
            self._queue.responses.extend(entries)
            self._queue.per_journal[journal] += len(entries)
            self._enqueue(len(entries))

    def submit_batch(self, log_: StepLog, batch: PendingBatch) -> None:
        with self._cond:
            self._queue.batches.append((log_, batch))
            self._enqueue(max(1, len(batch.rows)))

    async def write(
        self, fn: Callable[[sqlite3.Connection], Any], *, cache_keys: list[str] | None = None
    ) -> Any:
        """Run ``fn(connection)`` in a transaction of its own on the writer thread, in queue
        order, and return its result. ``cache_keys``: request-cache keys it stores (the key
        filter learns them before this returns)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue_write(fn, cache_keys or [], future)
        return await future

    def write_blocking(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``write`` for a caller that must not go on before the record is durable and cannot
        await (a few small records per Batch API chunk): blocks until it is committed."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._enqueue_write(fn, [], future)
        return future.result()

    def _enqueue_write(
        self, fn: Callable[[sqlite3.Connection], Any], keys: list[str], future: _AnyFuture
    ) -> None:
        """Queue a record, unless the writer has stopped on an error (then nobody would write
        it, and its caller would wait for ever): raise that error instead."""
        with self._cond:
            if self.error is not None:
                raise self.error
            self._queue.writes.append((fn, keys, future))
            self._urgent_until = self._enqueue(1)
            self._cond.notify()

    async def flush(self) -> None:
        """Wait until everything queued so far is written; raise the write error if any."""
        self.raise_if_failed()
        if self._this_turn:
            self._end_turn()
        with self._cond:
            target = self._enqueued_seq
            if self._written_seq >= target:
                return
            self._urgent_until = max(self._urgent_until, target)
            self._cond.notify()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await waiter
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _enqueue(self, items: int) -> int:
        """Count ``items`` more work (``_cond`` held); the sequence number of this work."""
        if not self._queued_items:
            self._first_queued = time.monotonic()
        self._queued_items += items
        self._enqueued_seq += 1
        self._queue.last_seq = self._enqueued_seq
        if self._queued_items >= GROUP_ITEMS or self._queued_items == items:
            self._cond.notify()
        return self._enqueued_seq

    # --- the writer thread ------------------------------------------------------------------

    def _writer_main(self) -> None:
        self._build_key_filter()
        while True:
            with self._cond:
                while True:
                    if self.error is not None:
                        return
                    if self._queued_items or self._queue.writes:
                        wait = self._first_queued + GROUP_DELAY_SECONDS - time.monotonic()
                        urgent = self._urgent_until > self._taken_seq or self._stopping
                        if wait <= 0 or urgent or self._queued_items >= GROUP_ITEMS:
                            break
                        self._cond.wait(wait)
                    elif self._stopping:
                        return
                    else:
                        self._cond.wait()
                group, self._queue, self._queued_items = self._queue, _Group(), 0
                self._taken_seq = group.last_seq
            try:
                self._write_group(group)
            except BaseException as exc:  # noqa: BLE001 — every failure reaches the loop
                error = exc if isinstance(exc, StateError) else self._write_error(exc, self.path)
                with self._cond:  # from here no record is queued: ``_enqueue_write`` raises
                    self.error = error
                    leftover, self._queue.writes = self._queue.writes, []
                self._call_loop(self._fail, error)
                for _, _, future in group.writes + leftover:
                    self._settle_write(future, None, error)
                return
            self._call_loop(self._written, group)

    def _write_group(self, group: _Group) -> None:
        commits: list[tuple[int, BatchCommit]] = []
        writers: dict[int, RowWriter] = {}
        for log_, batch in group.batches:
            position = log_.writer.append(batch.rows)
            writers[id(log_.writer)] = log_.writer
            commits.append((batch.seq, log_.commit_record(batch, position)))
        for writer in writers.values():
            writer.sync()
        if commits:
            faults.crash_if("after_append")
        if group.responses or commits:
            if group.responses:
                faults.raise_if("raise_in_cache_put")
            with self.db.transaction() as conn:
                if group.responses:
                    store_responses(conn, [(key, text) for key, text, _ in group.responses])
                    insert_spend(conn, self.run_id, [paid for _, _, paid in group.responses if paid])
                    faults.crash_if("mid_group")
                if commits:
                    insert_commits(conn, commits)
                    faults.crash_if("in_commit")
            self._learn_keys(key for key, _, _ in group.responses)
            if group.responses:
                faults.crash_if("after_cache_put")
            if commits:
                faults.crash_if("after_commit")
        for fn, keys, future in group.writes:
            try:
                with self.db.transaction() as conn:
                    result = fn(conn)
            except (sqlite3.Error, OSError):
                raise  # the database or the disk failed: the ledger stops
            except Exception as exc:  # the record itself was refused: its caller hears why
                self._settle_write(future, None, exc)
                continue
            self._learn_keys(keys)
            self._settle_write(future, result, None)

    def _build_key_filter(self) -> None:
        """Scan the stored keys once, before the first write, so the filter misses nothing."""
        conn = self.db.conn
        try:
            stored = int(conn.execute("SELECT COUNT(*) FROM request_cache").fetchone()[0])
            key_filter = KeyFilter(expected_keys=2 * stored + 1_000_000)
            for (key,) in conn.execute("SELECT key FROM request_cache"):
                key_filter.add(key)
        except sqlite3.Error:  # only an optimisation: without it, get() asks SQLite
            return
        self._filter = key_filter

    def _learn_keys(self, keys: Any) -> None:
        if self._filter is not None:
            for key in keys:
                self._filter.add(key)

    def _settle_write(self, future: _AnyFuture, result: Any, error: BaseException | None) -> None:
        if isinstance(future, concurrent.futures.Future):
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        else:
            self._call_loop(_settle, future, result, error)

    def _call_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is gone: nobody is left to tell
            pass

    # --- back on the loop -----------------------------------------------------------------

    def _written(self, group: _Group) -> None:
        for key, _, _ in group.responses:
            self._unwritten.pop(key, None)
        if self._journal is not None:
            for journal, count in enumerate(group.per_journal):
                if count:
                    self._journal.stored(journal, count)
        done: dict[int, tuple[StepLog, list[PendingBatch]]] = {}
        for log_, batch in group.batches:
            done.setdefault(id(log_), (log_, []))[1].append(batch)
        for log_, batches in done.values():
            log_.committed(batches)
        self._written_seq = max(self._written_seq, group.last_seq)
        still = []
        for target, waiter in self._waiters:
            if target <= self._written_seq:
                _settle(waiter, None, None)
            else:
                still.append((target, waiter))
        self._waiters = still

    def _fail(self, error: BaseException) -> None:
        """A write failed: stop sending (``on_error``), wake every waiter with the error."""
        first = self.error is None or self.error is error
        self.error = self.error or error
        with self._cond:
            self._cond.notify()
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            _settle(waiter, None, self.error)
        if first:
            for callback in self.on_error:
                callback(self.error)

    def _write_error(self, exc: BaseException, path: Path) -> StateError:
        what = (
            "the disk is full" if "full" in str(exc).lower() or getattr(exc, "errno", 0) == 28 else str(exc)
        )
        error = StateError(
            f"writing {path} failed: {what} ({type(exc).__name__}). The run stopped sending requests; "
            "every committed batch is kept and every response received is in the state database or its "
            "journal. Free disk space (or make the cache directory writable) and rerun the same command."
        )
        error.__cause__ = exc
        return error

    # --- stopping ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Write what is queued, then end the writer thread (every thread's last write lands
        before any connection closes). Raises the write error, if one stopped the ledger."""
        if self._this_turn:
            self._end_turn()
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
        if self._loop is not None:
            await asyncio.sleep(0)  # run the writer's last callbacks
        self.raise_if_failed()

    def join_writer(self) -> None:
        """End the writer thread if ``stop`` could not (the loop died): it writes what is
        queued first. Afterwards the owner may use ``db`` again (finishing the run record)."""
        if self._thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify()
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Close the journal (emptied when everything in it is stored) and the connections."""
        self.join_writer()
        if self._journal is not None:
            self._journal.close(everything_stored=self.error is None and not self._unwritten)
            self._journal = None
        self._reader.close()
        self.db.close()


class StepLog:
    """One step's committed progress: batches go in by ``submit`` and are committed in order
    by the ledger; ``committed_rows_in`` is the input rows covered by commits so far."""

    def __init__(self, ledger: Ledger, step: int, writer: RowWriter, committed_rows_in: int) -> None:
        self.ledger = ledger
        self.step = step
        self.writer = writer
        self.committed_rows_in = committed_rows_in
        self.backlog_rows = 0
        self.on_commit: list[Callable[[list[PendingBatch]], None]] = []

    def submit(self, batch: PendingBatch, rows_in: int) -> None:
        self.ledger.raise_if_failed()
        self.backlog_rows += rows_in
        self.ledger.submit_batch(self, batch)

    async def wait_backlog(self, limit_rows: int) -> None:
        """Wait while more than ``limit_rows`` input rows are queued for commit."""
        while self.backlog_rows > limit_rows:
            await self.ledger.flush()
        self.ledger.raise_if_failed()

    async def drain(self) -> None:
        await self.ledger.flush()

    def commit_record(self, batch: PendingBatch, out_position: int) -> BatchCommit:
        return BatchCommit(
            step=self.step,
            in_row_end=batch.in_row_end,
            in_position=batch.in_position,
            out_position=out_position,
            out_rows=len(batch.rows),
            failures=batch.failures,
            drops=batch.drops,
        )

    def committed(self, batches: list[PendingBatch]) -> None:
        end = batches[-1].in_row_end
        self.backlog_rows -= end - self.committed_rows_in
        self.committed_rows_in = end
        for callback in self.on_commit:
            callback(batches)

    def close(self) -> None:
        self.writer.close()


def step_file_lost_commits(db: StateDB, step: int, path: Path, fmt: str) -> bool:
    """Whether the step file is missing or shorter than its last commit says (then the step is
    recomputed from the start: what it had is gone)."""
    position = db.load_position(step)
    if position.seq == 0:
        return False
    return stored_position(path, fmt) < position.out_position


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
