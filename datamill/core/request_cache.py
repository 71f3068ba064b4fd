"""The request cache: every model response by its request key, in the state database.

Reads come from the event loop; a ``KeyFilter`` answers most misses without SQLite. Writes
come in groups from the dispatcher's cache-writer thread and share a lock with the batch
commits (see ``StateDB.transaction``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson

from datamill.core import faults
from datamill.core.keyfilter import KeyFilter
from datamill.core.response_journal import ResponseJournal, replay
from datamill.core.state import StateDB

#: One statement stores a whole group: ``?2`` is a JSON array of ``[key, response text]``.
#: Outside an explicit transaction a single statement is its own atomic transaction.
_PUT_FROM_JSON = (
    "INSERT OR REPLACE INTO request_cache(key, response, created_at) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?1 FROM json_each(?2)"
)


class RequestCache:
    """Responses by request key.

    Reads come from the event loop's thread; writes from the run's cache-writer thread (so
    they never wait on a step file's fsync). Each side has its own connection. ``put_many``
    takes a list so a group of responses shares one transaction.

    ``load_key_filter`` (run on the writer thread, before any put) builds a ``KeyFilter`` of
    the stored keys; from then on ``get`` skips the database for keys certainly not stored,
    and ``put_many`` adds its keys. Whoever writes the table by another connection must call
    ``drop_key_filter`` afterwards.
    """

    def __init__(self, path: Path) -> None:
        self._reader = StateDB(path, synchronous="NORMAL")
        self._writer = StateDB(path, synchronous="NORMAL")
        self._filter: KeyFilter | None = None
        self._filter_lock = threading.Lock()
        self._stored_during_build: list[str] | None = None

    def load_key_filter(self) -> None:
        """Start building the key filter on a background thread; ``get`` uses the database
        until it is ready, so a resumed run's first requests never wait for the scan. Keys
        stored meanwhile are collected and added when the scan ends (its snapshot may have
        missed them)."""
        stored_during_build: list[str] = []
        with self._filter_lock:
            self._filter = None
            self._stored_during_build = stored_during_build
        threading.Thread(
            target=self._build_key_filter,
            args=(stored_during_build,),
            name="datamill-key-filter",
            daemon=True,
        ).start()

    def _build_key_filter(self, stored_during_build: list[str]) -> None:
        """Scan the stored keys; install the filter only if no later build or drop superseded
        this one (its list is still the current one), so a stale scan never wins."""
        try:
            conn = sqlite3.connect(self._reader.path, check_same_thread=False)
            try:
                stored = int(conn.execute("SELECT COUNT(*) FROM request_cache").fetchone()[0])
                key_filter = KeyFilter(expected_keys=2 * stored + 1_000_000)
                for (key,) in conn.execute("SELECT key FROM request_cache"):
                    key_filter.add(key)
            finally:
                conn.close()
        except sqlite3.Error:  # a filter is only an optimisation: without it, get() asks SQLite
            return
        with self._filter_lock:
            if self._stored_during_build is not stored_during_build:
                return
            for key in stored_during_build:
                key_filter.add(key)
            self._stored_during_build = None
            self._filter = key_filter

    def share_write_lock(self, lock: AbstractContextManager[Any]) -> None:
        """Serialise this cache's writes with another ``StateDB`` of the same process."""
        self._writer.write_lock = lock

    def drop_key_filter(self) -> None:
        with self._filter_lock:
            self._filter = None
            self._stored_during_build = None

    def get(self, key: str) -> dict[str, Any] | None:
        key_filter = self._filter
        if key_filter is not None and not key_filter.might_contain(key):
            return None
        row = self._reader.conn.execute("SELECT response FROM request_cache WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def contains(self, key: str) -> bool:
        return (
            self._reader.conn.execute("SELECT 1 FROM request_cache WHERE key=?", (key,)).fetchone()
            is not None
        )

    def cached_keys(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` are cached: one query per 500 keys (the offline path's bulk check)."""
        found: set[str] = set()
        conn = self._reader.conn
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0] for r in conn.execute(f"SELECT key FROM request_cache WHERE key IN ({marks})", part)
            )
        return found

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached responses of ``keys`` (absent ones left out), read past the key filter:
        the offline path reads answers its store has just written through its own connection."""
        found: dict[str, dict[str, Any]] = {}
        conn = self._reader.conn
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, response FROM request_cache WHERE key IN ({marks})"
            found.update((key, orjson.loads(response)) for key, response in conn.execute(query, part))
        return found

    def put_many(self, items: list[tuple[str, dict[str, Any] | str]]) -> None:
        """Store ``(key, response)`` pairs (a response may come already encoded as JSON text)
        in one transaction.

        The pairs travel as one JSON array bound to one ``INSERT ... SELECT FROM json_each``:
        a single SQLite call, during which the calling thread holds no GIL. A writer thread
        beside a busy event loop waits for the GIL each time it wants it back (up to the
        interpreter's 5 ms switch interval), so one call per group instead of one per row is
        what keeps its writes prompt.
        """
        now = time.time()
        faults.raise_if("raise_in_cache_put")
        payload = orjson.dumps(
            [(key, value if isinstance(value, str) else orjson.dumps(value).decode()) for key, value in items]
        )
        with self._writer.write_lock:
            self._writer.conn.execute(_PUT_FROM_JSON, (now, payload.decode()))
        with self._filter_lock:
            if self._filter is not None:
                for key, _ in items:
                    self._filter.add(key)
            elif self._stored_during_build is not None:
                self._stored_during_build.extend(key for key, _ in items)
        faults.crash_if("after_cache_put")

    def open_journal(self) -> ResponseJournal:
        """Replay what a killed run left in the response journal, then open it for this run
        (``datamill.core.response_journal``; only the process holding the cache lock may)."""
        replay(self._writer.path, self.put_many)
        return ResponseJournal(self._writer.path)

    def count(self) -> int:
        return int(self._reader.conn.execute("SELECT COUNT(*) FROM request_cache").fetchone()[0])

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
