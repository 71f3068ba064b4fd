"""The response journal: what a killed run journaled reaches the request cache on the next run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from datamill.core.ledger import Ledger
from datamill.core.response_journal import ResponseJournal, journal_paths, read_journal
from datamill.core.spend import PaidResponse
from datamill.core.state import StateDB


def _entry(index: int, paid: PaidResponse | None = None) -> tuple[str, str, PaidResponse | None]:
    return f"{index:064x}", f'{{"texts":["answer {index}"],"prompt_tokens":3}}', paid


def test_replay_stores_complete_lines_skips_a_torn_tail_and_empties_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "run.state.db"
    first, second = journal_paths(state)
    journal = ResponseJournal(state)
    journal.append([_entry(1), _entry(2)])
    journal.close(everything_stored=False)
    with first.open("ab") as handle:  # a kill in the middle of the next write
        handle.write(b'%064x {"texts":["cut sh' % 3)
    second.write_bytes(b"%064x " % 4 + _entry(4)[1].encode() + b"\n")  # a line without spend

    assert sorted(read_journal(state)) == sorted([_entry(1), _entry(2), _entry(4)])
    ResponseJournal(state).close(everything_stored=True)  # opening it for a new run empties it
    assert read_journal(state) == []


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


def test_recovery_stores_journaled_responses_and_their_spend_once(tmp_path: Path) -> None:
    state = tmp_path / "run.state.db"
    StateDB(state).close()
    paid = PaidResponse(0, False, "m", 3, 5, 0.01)
    journal = ResponseJournal(state)
    journal.append([_entry(7, paid), _entry(8, paid)])
    journal.close(everything_stored=False)  # as a killed run leaves it

    ledger = Ledger(state)
    assert ledger.recover(run_id=1) == 2
    assert ledger.get(_entry(7)[0]) == {"texts": ["answer 7"], "prompt_tokens": 3}
    assert ledger.db.spend().requests == 2 and ledger.db.spend().completion_tokens == 10
    ledger.close()

    # A journal whose responses were already stored (emptied only on rotation) adds no spend.
    journal = ResponseJournal(state)
    journal.append([_entry(7, paid), _entry(9, paid)])
    journal.close(everything_stored=False)
    ledger = Ledger(state)
    ledger.recover(run_id=2)
    assert ledger.db.spend().requests == 3
    ledger.close()
    with sqlite3.connect(state) as conn:
        assert conn.execute("SELECT COUNT(*) FROM request_cache").fetchone()[0] == 3
