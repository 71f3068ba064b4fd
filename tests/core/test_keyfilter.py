"""The request cache's key filter: never a false "not cached", whatever the timing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from datamill.core.keyfilter import KeyFilter
from datamill.core.ledger import Ledger
from datamill.core.state import StateDB, store_responses


def _key(index: int) -> str:
    return hashlib.sha256(str(index).encode()).hexdigest()


def test_every_added_key_is_reported_present_and_most_absent_keys_are_not():
    key_filter = KeyFilter(expected_keys=10_000)
    for index in range(10_000):
        key_filter.add(_key(index))
    assert all(key_filter.might_contain(_key(index)) for index in range(10_000))
    false_positives = sum(key_filter.might_contain(_key(index)) for index in range(10_000, 20_000))
    assert false_positives < 100  # under 1%


def test_a_key_that_is_not_a_sha256_digest_is_always_looked_up():
    assert KeyFilter(expected_keys=10).might_contain("not-hex-at-all")


async def test_keys_stored_before_and_through_the_ledger_are_all_found(tmp_path: Path):
    path = tmp_path / "run.state.db"
    db = StateDB(path)
    with db.transaction() as conn:
        store_responses(conn, [(_key(index), f'{{"texts": ["{index}"]}}') for index in range(50_000)])
    db.close()
    ledger = Ledger(path)
    ledger.recover(run_id=1)
    ledger.start()
    for index in range(50_000, 50_100):
        ledger.record_response(_key(index), {"texts": [str(index)]}, None)
    await ledger.write(
        lambda conn: store_responses(conn, [(_key(50_100), '{"texts": ["offline"]}')]),
        cache_keys=[_key(50_100)],
    )
    await ledger.flush()
    assert ledger._filter is not None and not ledger._unwritten  # read from SQLite via the filter now
    for index in (0, 49_999, 50_000, 50_099, 50_100):
        assert ledger.get(_key(index)) is not None, index
    assert ledger.get(_key(99_999_999)) is None
    await ledger.stop()
    ledger.close()
