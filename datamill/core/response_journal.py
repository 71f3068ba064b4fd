"""The response journal: a response survives a killed process from the event-loop turn it arrives in.

Storing a response in the request cache is a random-key B-tree insert, ~20 µs a row, too slow
for the event loop at thousands of responses a second; so the cache is written by a thread,
in groups, some milliseconds later. The journal closes that gap: each loop turn appends its
responses to a plain file with one ``write`` (a few microseconds), and from then on a
``kill -9`` cannot lose them. The next run under the cache lock replays the journal into the
request cache (``read_journal``, called by the ledger's recovery), so those responses are never
requested again, and their spend is recorded once.

Durability is the state database's (WAL with ``synchronous=NORMAL``): the journal is written,
not fsynced, so it survives a killed process but not a power loss.

Two files take turns, so the journal stays small on a run of any length: appends go to the
active file; once it passes ``ROTATE_BYTES`` and every response in the other file has reached
the request cache, that file is emptied and becomes the active one. Each line is
``key [response, spend]``; a torn last line (a kill mid-write) is skipped on replay.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from datamill.core.spend import PaidResponse

log = logging.getLogger(__name__)

#: Size at which appends move to the other file once it is no longer needed.
ROTATE_BYTES = 8 * 1024 * 1024


def journal_paths(state_path: Path) -> tuple[Path, Path]:
    """The journal's two files beside the state database ``state_path``."""
    return (
        state_path.with_name(state_path.name + ".responses-0.log"),
        state_path.with_name(state_path.name + ".responses-1.log"),
    )


def read_journal(state_path: Path) -> list[tuple[str, str, PaidResponse | None]]:
    """Every journaled response (key, response JSON, its spend) and empty the journal files.

    Only the ledger calls it, under the cache lock, in the transaction-to-be's order: it reads,
    the ledger stores, and the files are emptied when the ledger opens the journal again. A
    crash after storing and before emptying replays them again, which is harmless: the same key
    gets the same response, and the spend table is only written in the same transaction as the
    response the first time (a replayed key already in the cache is skipped).
    """
    entries: list[tuple[str, str, PaidResponse | None]] = []
    for path in journal_paths(state_path):
        if not path.exists():
            continue
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line:
                continue
            key, _, payload = line.partition(b" ")
            try:
                entry = orjson.loads(payload)
            except orjson.JSONDecodeError:
                if number == len(lines):
                    continue  # the torn tail of a write cut short by a kill
                log.warning("%s line %d is not a journal entry; skipped", path, number)
                continue
            if isinstance(entry, dict):  # written before spend was journaled
                entries.append((key.decode(), payload.decode(), None))
            else:
                response, paid = entry
                paid_response = PaidResponse.from_json(paid) if paid is not None else None
                entries.append((key.decode(), orjson.dumps(response).decode(), paid_response))
    return entries


class ResponseJournal:
    """The run's writer of the journal (one process, under the cache lock, on the event loop).

    Open it only after ``read_journal``'s entries are stored: opening empties the files.
    """

    def __init__(self, state_path: Path, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.rotate_bytes = rotate_bytes
        self._paths = journal_paths(state_path)
        self._fds = [os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for path in self._paths]
        for fd in self._fds:  # the ledger has stored what they held (``read_journal``)
            os.ftruncate(fd, 0)
        self._sizes = [os.fstat(fd).st_size for fd in self._fds]
        self._unstored = [0, 0]  # journaled responses not yet in the request cache, per file
        self._active = 0

    @property
    def active(self) -> int:
        """The index of the file appends go to."""
        return self._active

    @property
    def active_path(self) -> Path:
        return self._paths[self._active]

    def append(self, entries: list[tuple[str, str, PaidResponse | None]]) -> int:
        """Append ``entries`` (key, response JSON, spend) in one write; the file's index, for
        ``stored``. Each line is ``key [response, spend]``."""
        data = "".join(
            [
                f"{key} [{response},{'null' if paid is None else orjson.dumps(paid.to_json()).decode()}]\n"
                for key, response, paid in entries
            ]
        ).encode()
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
