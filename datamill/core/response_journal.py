"""The response journal: a response survives a killed process from the event-loop turn it arrives in.

Storing a response in the request cache is a random-key B-tree insert, ~20 µs a row, too slow
for the event loop at thousands of responses a second; so the cache is written by a thread,
in groups, some milliseconds later. The journal closes that gap: each loop turn appends its
responses to a plain file with one ``write`` (a few microseconds), and from then on a
``kill -9`` cannot lose them. The next run under the cache lock replays the journal into the
request cache (``replay``), so those responses are never requested again.

Durability is the state database's (WAL with ``synchronous=NORMAL``): the journal is written,
not fsynced, so it survives a killed process but not a power loss.

Two files take turns, so the journal stays small on a run of any length: appends go to the
active file; once it passes ``ROTATE_BYTES`` and every response in the other file has reached
the request cache, that file is emptied and becomes the active one. Each line is
``[key, response JSON]``; a torn last line (a kill mid-write) is skipped on replay.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

#: Size at which appends move to the other file once it is no longer needed.
ROTATE_BYTES = 8 * 1024 * 1024


def journal_paths(state_path: Path) -> tuple[Path, Path]:
    """The journal's two files beside the state database ``state_path``."""
    return (
        state_path.with_name(state_path.name + ".responses-0.log"),
        state_path.with_name(state_path.name + ".responses-1.log"),
    )


def replay(state_path: Path, store: Callable[[list[tuple[str, str]]], None]) -> int:
    """Store every journaled response with ``store`` and empty the journal; the count stored.

    Call it only under the cache lock, before a run writes the journal. A crash after
    ``store`` and before the files are emptied replays them again, which is harmless: the
    same key gets the same response.
    """
    entries: list[tuple[str, str]] = []
    paths = journal_paths(state_path)
    for path in paths:
        if not path.exists():
            continue
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line:
                continue
            key, _, response = line.partition(b" ")
            try:
                orjson.loads(response)
            except orjson.JSONDecodeError:
                if number == len(lines):
                    continue  # the torn tail of a write cut short by a kill
                log.warning("%s line %d is not a journal entry; skipped", path, number)
                continue
            entries.append((key.decode(), response.decode()))
    if entries:
        store(entries)
        log.info("recovered %d response(s) from the response journal", len(entries))
    for path in paths:
        if path.exists():
            path.unlink()
    return len(entries)


class ResponseJournal:
    """The run's writer of the journal (one process, under the cache lock, on the event loop).

    Open it only after ``replay``: ``close`` empties files whose responses are all stored.
    """

    def __init__(self, state_path: Path, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.rotate_bytes = rotate_bytes
        self._fds = [
            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for path in journal_paths(state_path)
        ]
        self._sizes = [os.fstat(fd).st_size for fd in self._fds]
        self._unstored = [0, 0]  # journaled responses not yet in the request cache, per file
        self._active = 0

    @property
    def active(self) -> int:
        """The index of the file appends go to."""
        return self._active

    def append(self, entries: list[tuple[str, str]]) -> int:
        """Append ``entries`` (key, response JSON) in one write; the file's index, for ``stored``."""
        data = "".join([f"{key} {response}\n" for key, response in entries]).encode()
        active = self._active
        fd = self._fds[active]
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        self._sizes[active] += len(data)
        self._unstored[active] += len(entries)
        return active

    def stored(self, index: int, count: int) -> None:
        """``count`` responses journaled in file ``index`` are now in the request cache."""
        self._unstored[index] -= count
        other = 1 - self._active
        if self._sizes[self._active] >= self.rotate_bytes and self._unstored[other] == 0:
            os.ftruncate(self._fds[other], 0)
            self._sizes[other] = 0
            self._active = other

    def close(self, *, everything_stored: bool) -> None:
        """Close the files; empty them when every response reached the request cache."""
        for index, fd in enumerate(self._fds):
            if everything_stored and self._unstored[index] == 0:
                os.ftruncate(fd, 0)
            os.close(fd)
