"""Group commit: appending batches to a step file and recording them, off the event loop.

The commit protocol for each batch is: append its rows to the step file, fsync, then record
the commit in one SQLite transaction. Batches that become ready while a commit is in progress
are committed together next time — each keeps its own commit record, so each stays atomic,
but the group pays one fsync and one transaction. The work runs in one thread so the event
loop keeps requests flowing meanwhile. Request-cache writes have a thread of their own, so a
response arriving during a commit is stored at once rather than after this group's fsync.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from datamill.core import faults
from datamill.core.rowfiles import Row, RowWriter
from datamill.core.state import BatchCommit, StateDB


@dataclass
class PendingBatch:
    """A computed batch waiting to be committed."""

    seq: int
    rows: list[Row]
    in_row_end: int
    in_position: int
    failures: list[tuple[int, str]]
    drops: dict[str, int]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


#: A group commit starts once this many input rows are waiting, when someone waits for the
#: commits (backpressure, the step's end), or ``COMMIT_DELAY_SECONDS`` after the last one
#: started. Responses are already safe in the response journal, so a short delay costs no
#: safety, and it keeps small batches from paying an fsync and a transaction every millisecond.
COMMIT_GROUP_ROWS = 256
COMMIT_DELAY_SECONDS = 0.02


class GroupCommitter:
    def __init__(self, step: int, writer: RowWriter, state: StateDB, executor: ThreadPoolExecutor) -> None:
        self.step = step
        self.writer = writer
        self.state = state
        self.committed_rows_in = 0
        self.backlog_rows = 0
        self._queue: list[PendingBatch] = []
        self._job: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._executor = executor
        self._idle = asyncio.Event()
        self._idle.set()
        self._timer: asyncio.TimerHandle | None = None
        self.on_commit: list = []

    def submit(self, batch: PendingBatch, rows_in: int) -> None:
        self._raise_if_failed()
        self._queue.append(batch)
        self.backlog_rows += rows_in
        self._start_when_due()

    async def wait_backlog(self, limit_rows: int) -> None:
        """Wait while more than ``limit_rows`` input rows are queued for commit."""
        while self.backlog_rows > limit_rows and self._start_now():
            self._idle.clear()
            await self._idle.wait()
        self._raise_if_failed()

    async def drain(self) -> None:
        while self._start_now():
            self._idle.clear()
            await self._idle.wait()
        self._raise_if_failed()

    async def settle(self) -> None:
        """Let the batches already submitted commit, raising nothing: a step that stops early
        (an error, Ctrl-C) keeps every batch it finished before the stop, and the writer is
        closed only once no commit is running on it.
        """
        while self._start_now():
            self._idle.clear()
            await self._idle.wait()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _start_when_due(self) -> None:
        if self._job is not None or not self._queue:
            return
        if self.backlog_rows >= COMMIT_GROUP_ROWS:
            self._start()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(COMMIT_DELAY_SECONDS, self._start_now)

    def _start_now(self) -> bool:
        """Start a commit of what is queued unless one runs; whether a commit is running."""
        if self._job is None and self._queue and self._error is None:
            self._start()
        return self._job is not None

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group, self._queue = self._queue, []
        loop = asyncio.get_running_loop()
        self._job = loop.run_in_executor(self._executor, self._commit_group, group)
        self._job.add_done_callback(lambda job: self._finished(job, group))

    def _finished(self, job: asyncio.Future[None], group: list[PendingBatch]) -> None:
        self._job = None
        if job.cancelled():
            self._error = asyncio.CancelledError()
        elif job.exception() is not None:
            self._error = job.exception()
        else:
            rows_in = group[-1].in_row_end - self.committed_rows_in
            self.committed_rows_in = group[-1].in_row_end
            self.backlog_rows -= rows_in
            for callback in self.on_commit:
                callback(group)
            self._start_when_due()
        if self._job is None:
            self._idle.set()

    def _commit_group(self, group: list[PendingBatch]) -> None:
        commits = []
        for batch in group:
            position = self.writer.append(batch.rows)
            commits.append(
                (
                    batch.seq,
                    BatchCommit(
                        step=self.step,
                        in_row_end=batch.in_row_end,
                        in_position=batch.in_position,
                        out_position=position,
                        out_rows=len(batch.rows),
                        failures=batch.failures,
                        drops=batch.drops,
                        prompt_tokens=batch.prompt_tokens,
                        completion_tokens=batch.completion_tokens,
                        cost_usd=batch.cost_usd or 0.0,  # the commits table has no unknown cost
                    ),
                )
            )
        self.writer.sync()
        faults.crash_if("after_append")
        self.state.commit_batches(commits, done_steps=[])
        faults.crash_if("after_commit")
