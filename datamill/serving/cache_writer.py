"""Responses on their way to the request cache: journaled in the loop turn they arrive in,
then written to SQLite by a thread of its own, in groups.

Storing a response in SQLite is a random-key insert (~20 µs a row, most of it I/O), too slow
for the event loop at thousands of responses a second. So each loop turn appends its
responses to the response journal with one ``write`` (``datamill.core.response_journal``),
which already makes them survive a killed process, and the request cache is written by a
thread in groups: one write at a time, of up to ``WRITE_GROUP_ROWS`` responses or what
arrived within ``WRITE_DELAY_SECONDS``. Until its write lands, a response stays in
memory and answers an identical request from there.

A failed write (a full disk) stops the SQLite writes; ``error`` holds the exception, which the
dispatcher raises from its next ``submit`` and from ``close``. Responses keep being journaled
while the run stops, and the journal is kept for the next run to replay.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import orjson

from datamill.core import faults
from datamill.core.request_cache import RequestCache
from datamill.serving.types import GenericResponse

#: A write starts once this many responses are queued, or ``WRITE_DELAY_SECONDS`` after the
#: first of them: the journal already holds them, so waiting costs no safety, and a large
#: group spreads the transaction's fixed cost (and the writer's waits for the GIL) thinly.
WRITE_GROUP_ROWS = 512
WRITE_DELAY_SECONDS = 0.05


class CacheWriter:
    """Journals each loop turn's responses, writes them to the cache in groups, forgets them."""

    def __init__(self, cache: RequestCache) -> None:
        self.cache = cache
        self.error: BaseException | None = None
        self._journal = cache.open_journal()
        self._this_turn: list[tuple[str, str]] = []
        self._queued: list[tuple[str, str]] = []
        self._queued_per_journal = [0, 0]  # how many of ``_queued`` each journal file holds
        self._unwritten: dict[str, GenericResponse] = {}
        self._writing: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datamill-cache")

    def unwritten(self, key: str) -> GenericResponse | None:
        """The response for ``key`` if it arrived and is not in the cache yet."""
        return self._unwritten.get(key)

    def store(self, key: str, response: GenericResponse) -> None:
        """Take ``response``; it is journaled at the end of this loop turn."""
        if not self._this_turn:
            asyncio.get_running_loop().call_soon(self._end_turn)
        self._this_turn.append((key, orjson.dumps(response.to_cache()).decode()))
        self._unwritten[key] = response

    def _end_turn(self) -> None:
        """Journal this turn's responses in one write, then hand them to the writer thread."""
        entries, self._this_turn = self._this_turn, []
        if not entries:
            return
        try:
            journal = self._journal.append(entries)
        except OSError as exc:  # e.g. a full disk: the run must stop and say so
            self.error = self.error or exc
            return
        faults.crash_if("after_journal_append")
        self._queued.extend(entries)
        self._queued_per_journal[journal] += len(entries)
        self._start_when_due()

    def _start_when_due(self) -> None:
        """Start a write if a group is full, else make sure one starts after the delay."""
        if self._writing is not None or not self._queued:
            return
        if len(self._queued) >= WRITE_GROUP_ROWS:
            self._start()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WRITE_DELAY_SECONDS, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None or not self._queued or self.error is not None:
            return
        group, self._queued = self._queued, []
        per_journal, self._queued_per_journal = self._queued_per_journal, [0, 0]
        self._writing = asyncio.get_running_loop().run_in_executor(self._thread, self.cache.put_many, group)
        self._writing.add_done_callback(lambda job: self._written(job, group, per_journal))

    def _written(
        self, job: asyncio.Future[None], group: list[tuple[str, str]], per_journal: list[int]
    ) -> None:
        self._writing = None
        error = job.exception() if not job.cancelled() else asyncio.CancelledError()
        if error is not None:  # e.g. a full disk: the run must stop and say so
            self.error = self.error or error
            return  # the group stays in the journal (and in memory) for the next run
        for key, _ in group:
            self._unwritten.pop(key, None)
        for journal, count in enumerate(per_journal):
            if count:
                self._journal.stored(journal, count)
        self._start_when_due()

    async def close(self) -> None:
        """Journal and write what is left, stop the thread, and raise the write error if there
        was one (what could not be written stays in the journal for the next run)."""
        try:
            if self._this_turn:
                self._end_turn()
            while self._writing is not None or (self._queued and self.error is None):
                if self._writing is None:
                    self._start()
                await asyncio.wait([self._writing])  # type: ignore[list-item]
        finally:
            self._thread.shutdown(wait=True)
            self._journal.close(everything_stored=self.error is None)
        if self.error is not None:
            raise self.error
