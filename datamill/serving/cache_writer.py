"""Writing responses to the request cache as they arrive, off the event loop, in groups.

A response is queued the moment it arrives and written by a thread of its own, so the event
loop never blocks on SQLite (a random-key insert touches a random B-tree page: ~20 µs a row,
most of it I/O). One write runs at a time; every response that arrives meanwhile joins the
next one, so a group grows as large as the writer is slow and a response waits at most about
one write for its turn. Until its write lands, a response stays in memory and answers an
identical request from there.

A failed write (a full disk) keeps its responses queued and in memory; ``error`` holds the
exception, which the dispatcher raises from its next ``submit`` and from ``close``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import orjson

from datamill.core.request_cache import RequestCache
from datamill.serving.types import GenericResponse


class CacheWriter:
    """Responses on their way to the request cache: queued, written in groups, then forgotten."""

    def __init__(self, cache: RequestCache) -> None:
        self.cache = cache
        self.error: BaseException | None = None
        self._queued: list[tuple[str, str]] = []
        self._unwritten: dict[str, GenericResponse] = {}
        self._writing: asyncio.Future[None] | None = None
        self._scheduled = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datamill-cache")

    def unwritten(self, key: str) -> GenericResponse | None:
        """The response for ``key`` if it arrived and is not in the cache yet."""
        return self._unwritten.get(key)

    def store(self, key: str, response: GenericResponse) -> None:
        """Queue ``response``; the write starts in this loop turn unless one is running."""
        self._queued.append((key, orjson.dumps(response.to_cache()).decode()))
        self._unwritten[key] = response
        if self._writing is None and not self._scheduled:
            self._scheduled = True  # the rest of this loop turn's responses join the group
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._writing is not None or not self._queued or self.error is not None:
            return
        group, self._queued = self._queued, []
        self._writing = asyncio.get_running_loop().run_in_executor(self._thread, self.cache.put_many, group)
        self._writing.add_done_callback(lambda job: self._written(job, group))

    def _written(self, job: asyncio.Future[None], group: list[tuple[str, str]]) -> None:
        self._writing = None
        error = job.exception() if not job.cancelled() else asyncio.CancelledError()
        if error is not None:  # e.g. a full disk: the run must stop and say so
            self._queued = group + self._queued
            self.error = error
            return
        for key, _ in group:
            self._unwritten.pop(key, None)
        self._start()

    async def close(self) -> None:
        """Wait for the running write, write what is queued, and stop the thread; raise the
        write error if there was one (nothing queued is dropped before that)."""
        try:
            while self._writing is not None or (self._queued and self.error is None):
                if self._writing is None:
                    self._start()
                if self._writing is not None:
                    await asyncio.wait([self._writing])
        finally:
            self._thread.shutdown(wait=True)
        if self.error is not None:
            raise self.error
