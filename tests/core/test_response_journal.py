"""The response journal: what a killed run journaled reaches the request cache on the next run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from datamill.core.request_cache import RequestCache
from datamill.core.response_journal import ResponseJournal, journal_paths, replay
from datamill.core.state import StateDB


def _entry(index: int) -> tuple[str, str]:
    return f"{index:064x}", f'{{"texts":["answer {index}"],"prompt_tokens":3}}'


def test_replay_stores_complete_lines_skips_a_torn_tail_and_empties_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "run.state.db"
    first, second = journal_paths(state)
    journal = ResponseJournal(state)
    journal.append([_entry(1), _entry(2)])
    journal.close(everything_stored=False)
    with first.open("ab") as handle:  # a kill in the middle of the next write
        handle.write(b'%064x {"texts":["cut sh' % 3)
    second.write_bytes(b"%064x " % 4 + _entry(4)[1].encode() + b"\n")

    stored: list[tuple[str, str]] = []
    assert replay(state, stored.extend) == 3
    assert sorted(stored) == sorted([_entry(1), _entry(2), _entry(4)])
    assert not first.exists() and not second.exists()
    assert replay(state, stored.extend) == 0


def test_a_file_is_emptied_only_once_every_response_in_it_is_stored(tmp_path: Path) -> None:
    state = tmp_path / "run.state.db"
    paths = journal_paths(state)
    journal = ResponseJournal(state, rotate_bytes=200)
    assert journal.append([_entry(i) for i in range(3)]) == 0  # ~300 bytes: past the limit
    journal.stored(0, 2)
    assert journal.active == 1  # file 1 held nothing unstored: appends move there
    assert journal.append([_entry(i) for i in range(3, 6)]) == 1
    journal.stored(1, 3)
    assert journal.active == 1 and paths[0].stat().st_size > 0  # one response of file 0 unstored
    journal.stored(0, 1)
    assert journal.active == 0 and paths[0].stat().st_size == 0
    journal.close(everything_stored=True)
    assert all(path.stat().st_size == 0 for path in paths)


def test_the_cache_replays_the_journal_when_a_run_opens_it(tmp_path: Path) -> None:
    state = tmp_path / "run.state.db"
    StateDB(state).close()
    journal = ResponseJournal(state)
    journal.append([_entry(7)])
    journal.close(everything_stored=False)  # as a killed run leaves it

    cache = RequestCache(state)
    cache.open_journal().close(everything_stored=True)
    assert cache.get(_entry(7)[0]) == {"texts": ["answer 7"], "prompt_tokens": 3}
    cache.close()
    with sqlite3.connect(state) as conn:
        assert conn.execute("SELECT COUNT(*) FROM request_cache").fetchone()[0] == 1
