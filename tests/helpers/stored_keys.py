"""Which responses a client had stored: the crash tests' measure of "never bought twice"."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def stored_response_keys(cache: Path, prefix: str) -> set[str]:
    """Request keys in the request cache or in the response journal (whose complete lines
    the next run replays into the cache) of the cache folder ``cache``."""
    db = cache / f"{prefix}.state.db"
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM request_cache")}
    for journal in cache.glob(f"{prefix}.state.db.responses-*.log"):
        for line in journal.read_bytes().splitlines():
            key, _, response = line.partition(b" ")
            if response.endswith(b"}"):
                keys.add(key.decode())
    return keys
