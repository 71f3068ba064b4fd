"""The request cache's key filter: never a false "not cached", whatever the timing."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from datamill.core.keyfilter import KeyFilter
from datamill.core.request_cache import RequestCache
from datamill.core.state import StateDB


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


def _wait_for_filter(cache: RequestCache) -> None:
    deadline = time.monotonic() + 10
    while cache._filter is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache._filter is not None


def test_keys_stored_while_the_filter_is_built_are_found_afterwards(tmp_path: Path):
    path = tmp_path / "run.state.db"
    StateDB(path).close()
    cache = RequestCache(path)
    cache.put_many([(_key(index), {"texts": [str(index)]}) for index in range(50_000)])
    cache.load_key_filter()
    cache.put_many([(_key(index), {"texts": [str(index)]}) for index in range(50_000, 50_100)])
    _wait_for_filter(cache)
    cache.put_many([(_key(50_100), {"texts": ["last"]})])
    for index in (0, 49_999, 50_000, 50_099, 50_100):
        assert cache.get(_key(index)) is not None, index
    assert cache.get(_key(99_999_999)) is None
    cache.close()


def test_a_build_superseded_by_a_later_one_never_installs_its_stale_filter(tmp_path: Path):
    path = tmp_path / "run.state.db"
    StateDB(path).close()
    cache = RequestCache(path)
    superseded: list[str] = []  # the list of a build that a later load_key_filter replaced
    cache.load_key_filter()
    _wait_for_filter(cache)
    current = cache._filter
    cache._build_key_filter(superseded)  # the old scan finishing last
    assert cache._filter is current
    cache.close()
