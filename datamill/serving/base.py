"""What every LLM serving provides to the engine.

A serving knows how to turn a ``GenericRequest`` into one HTTP call (or one local generation)
and back. Caching, in-run de-duplication, concurrency and retries are the dispatcher's job
(``datamill.serving.dispatch``), so a backend implements ``send_once`` and nothing else.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

from datamill.core.fingerprint import strip_excluded
from datamill.serving.retry import RetryPolicy
from datamill.serving.types import GenericRequest, GenericResponse


class LLMServingABC(ABC):
    """Base of every LLM backend.

    Subclasses set ``provider`` and ``model_name`` and implement ``send_once``. ``params`` are
    the generation parameters sent with every request (temperature, max_tokens, ...); they are
    part of the request key and of the step fingerprint.
    """

    provider: str = "generic"

    def __init__(
        self,
        model_name: str,
        *,
        max_workers: int = 16,
        retry: RetryPolicy | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.model_name = model_name
        self.max_workers = max(1, int(max_workers))
        self.retry = retry or RetryPolicy()
        self.params = {k: v for k, v in (params or {}).items() if v is not None}
        self._semaphore: asyncio.Semaphore | None = None

    # --- engine-facing ---------------------------------------------------------------

    def build_request(self, messages: list[dict[str, Any]], **extra_params: Any) -> GenericRequest:
        params = dict(self.params)
        params.update({k: v for k, v in extra_params.items() if v is not None})
        return GenericRequest(self.provider, self.model_name, messages, params)

    def fingerprint_config(self) -> dict[str, Any]:
        return strip_excluded({"provider": self.provider, "model": self.model_name, "params": self.params})

    def slots(self) -> asyncio.Semaphore:
        """The concurrency limit shared by every operator that uses this serving."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_workers)
        return self._semaphore

    async def start(self) -> None:
        """Open connections; called once per run inside the run's event loop."""

    async def close(self) -> None:
        """Release connections; the serving can be started again by a later run."""
        self._semaphore = None

    @abstractmethod
    async def send_once(self, request: GenericRequest) -> GenericResponse:
        """One attempt at one request. Raise ``ServingError`` (with ``retryable``) on failure."""

    def cost_usd(self, response: GenericResponse) -> float:
        """What ``response`` cost; 0 for backends without a price table."""
        return 0.0
