"""Finding the pipelines under the directories ``datamill ui`` was given.

A pipeline is a cache directory and a prefix: one ``{prefix}.state.db``. Each has a short,
stable id (a hash of its resolved path and prefix) that the page and the JSON API use.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamill.cli.cachedir import STATE_SUFFIX, CacheDir

#: Folders never searched: version control, environments, tool caches.
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv"})
#: How deep below each given directory to look; deeper trees are named on the command line.
MAX_DEPTH = 6


@dataclass(frozen=True)
class Pipeline:
    """One cache directory and prefix, as the page lists it."""

    id: str
    cache: CacheDir

    def describe(self, root: Path) -> dict[str, Any]:
        try:
            shown = str(self.cache.path.relative_to(root)) or "."
        except ValueError:
            shown = str(self.cache.path)
        return {"id": self.id, "path": str(self.cache.path), "shown": shown, "prefix": self.cache.prefix}


def pipeline_id(cache: CacheDir) -> str:
    digest = hashlib.sha256(f"{cache.path.resolve()}\0{cache.prefix}".encode()).hexdigest()
    return digest[:12]


def find_pipelines(roots: list[Path]) -> list[Pipeline]:
    """Every ``*.state.db`` under ``roots`` (hidden folders and environments skipped), sorted
    by path then prefix; a root that does not exist yields nothing."""
    found: dict[str, Pipeline] = {}
    for root in roots:
        root = root.resolve()
        base_depth = len(root.parts)
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            if len(here.parts) - base_depth >= MAX_DEPTH:
                dirs.clear()
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
            for name in sorted(files):
                if name.endswith(STATE_SUFFIX) and len(name) > len(STATE_SUFFIX):
                    cache = CacheDir(here, name[: -len(STATE_SUFFIX)])
                    found.setdefault(pipeline_id(cache), Pipeline(pipeline_id(cache), cache))
    return sorted(found.values(), key=lambda p: (str(p.cache.path), p.cache.prefix))
