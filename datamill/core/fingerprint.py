"""Step fingerprints: a versioned hash of what makes a step's output what it is.

The hashed document names the operator class, its config, the call's keys and the upstream
identity (the previous step's fingerprint, or the input file's content identity). Fields that
change speed but not output are left out by name (``EXCLUDED_FIELDS``), so changing what
invalidates the cache is a visible, reviewed change: bump ``FINGERPRINT_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FINGERPRINT_VERSION = 1

EXCLUDED_FIELDS: frozenset[str] = frozenset(
    {
        "max_workers",
        "timeout",
        "request_timeout",
        "batch_size",
        "rpm",
        "tpm",
        "max_retries",
        "retry_max_seconds",
        "api_key",
        "api_url",
        "base_url",
        "offline_batch_generation_block_until_done",
        "use_offline_batch_generation",
        "poll_interval",
    }
)

_WHOLE_FILE_LIMIT = 64 * 1024 * 1024
_EDGE_BYTES = 4 * 1024 * 1024


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def strip_excluded(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in EXCLUDED_FIELDS}


def fingerprint(doc: dict[str, Any]) -> str:
    payload = canonical_json({"fingerprint_version": FINGERPRINT_VERSION, **doc})
    return hashlib.sha256(payload.encode()).hexdigest()


def file_identity(path: Path) -> dict[str, Any]:
    """Content identity of an input file: its size and a hash of its bytes.

    Files up to 64 MiB are hashed whole; larger ones by their first and last 4 MiB, which
    catches appends and rewrites without reading gigabytes at every start. The path and
    mtime stay out, so moving or rewriting the same content keeps the cache valid.
    """
    if path.is_dir():
        parts = sorted(p for p in path.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
        return {"parts": [file_identity(p) for p in parts]}
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= _WHOLE_FILE_LIMIT:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        else:
            digest.update(handle.read(_EDGE_BYTES))
            handle.seek(size - _EDGE_BYTES, os.SEEK_SET)
            digest.update(handle.read(_EDGE_BYTES))
    return {"size": size, "sha256": digest.hexdigest()}


def describe_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable list of the fields that differ between two fingerprint documents."""
    changes: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        if key not in old:
            changes.append(f"{path} added")
        elif key not in new:
            changes.append(f"{path} removed")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            changes.extend(describe_changes(old[key], new[key], prefix=f"{path}."))
        elif old[key] != new[key]:
            changes.append(f"{path} changed")
    return changes
