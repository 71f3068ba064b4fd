"""Which responses a client had stored: the crash tests' measure of "never bought twice"."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


def stored_response_keys(cache: Path, prefix: str) -> set[str]:
    """Request keys in the request cache or in the response journal (whose complete lines
    the next run replays into the cache) of the cache folder ``cache``."""
    db = cache / f"{prefix}.state.db"
    keys: set[str] = set()
    if db.exists():
        with sqlite3.connect(db) as conn:
            try:
                keys = {row[0] for row in conn.execute("SELECT key FROM request_cache")}
            except sqlite3.OperationalError:  # killed before the schema was created
                keys = set()
    for journal in cache.glob(f"{prefix}.state.db.responses-*.log"):
        for line in journal.read_bytes().splitlines():
            key, _, entry = line.partition(b" ")
            try:
                json.loads(entry)
            except ValueError:  # the torn tail of a killed append: not journaled
                continue
            keys.add(key.decode())
    return keys
