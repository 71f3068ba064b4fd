"""Everything one running simulator holds: knobs, random stream, counters, files and batches.

One ``SimulatorState`` lives on the aiohttp application (``STATE_KEY``) and is touched only from
the server's event loop, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from datamill.simulator.accounting import Accounting
from datamill.simulator.config import SimulatorConfig
from datamill.simulator.faults import RateLimiter, make_rate_limiter


@dataclass
class StoredFile:
    """A file held in memory, shaped on the wire like OpenAI's file object."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class SimulatorState:
    """The mutable heart of one simulator; endpoint modules reach it through ``STATE_KEY``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.limiter: RateLimiter | None = make_rate_limiter(config)
        self.accounting = Accounting()
        self.files: dict[str, StoredFile] = {}
        self.openai_batches: dict[str, Any] = {}
        self.anthropic_batches: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serials = itertools.count(1)
        self._response_ids = itertools.count(1)

    def update_config(self, knobs: dict[str, Any]) -> SimulatorConfig:
        """Swap in a config with ``knobs`` changed; a new seed or rate limit restarts that part."""
        new = self.config.with_knobs(**knobs)
        old = self.config
        self.config = new
        if new.seed != old.seed:
            self.rng = random.Random(new.seed)
        if (new.rpm_limit, new.rpm_burst) != (old.rpm_limit, old.rpm_burst):
            self.limiter = make_rate_limiter(new)
        return new

    def reset_counters(self) -> None:
        """Clear the accounting and refill the rate limiter; files and batches stay."""
        self.accounting.reset()
        self.limiter = make_rate_limiter(self.config)

    def next_serial(self) -> int:
        """A counter for things that need a deterministic order (batch shuffles)."""
        return next(self._serials)

    def response_id(self, prefix: str) -> str:
        """A cheap unique id for one online response (``chatcmpl-sim1``, ``msg_sim2``, ...)."""
        return f"{prefix}sim{next(self._response_ids)}"

    def add_file(self, filename: str, purpose: str, data: bytes, *, count: bool = True) -> StoredFile:
        """Store ``data`` as a new file; ``count`` it in ``files_created`` (uploads, not results)."""
        stored = StoredFile(new_id("file-"), filename, purpose, data, int(time.time()))
        self.files[stored.id] = stored
        if count:
            self.accounting.files_created += 1
        return stored

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task that ``cancel_tasks`` will stop at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        """Cancel every background task and wait for them to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def new_id(prefix: str) -> str:
    """A random id in the provider's style, e.g. ``file-3f9a...`` or ``batch_...``."""
    return prefix + secrets.token_hex(12)


STATE_KEY = web.AppKey("datamill_simulator_state", SimulatorState)
