"""The request dispatcher: the one path every online model call takes.

For each request it (1) joins an identical request already in flight, (2) answers from the
request cache, or (3) sends it under the serving's concurrency limit, retrying what can be
retried, and stores the response in the cache as soon as it arrives. Cache writes that arrive
in the same event-loop turn are coalesced into one transaction.

``submit`` returns a future at once, so a batch can put all its requests in flight and the
engine can keep requests flowing across batch boundaries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from datamill.core import faults
from datamill.core.state import RequestCache
from datamill.errors import ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.types import GenericRequest, GenericResponse

log = logging.getLogger(__name__)


@dataclass
class DispatchStats:
    """Counters for the run summary and the progress display."""

    submitted: int = 0
    cache_hits: int = 0
    joined_in_flight: int = 0
    sent: int = 0
    retries: int = 0
    failed: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class RequestDispatcher:
    """Cache lookup, in-run de-duplication, concurrency and retries for online requests."""

    def __init__(self, cache: RequestCache) -> None:
        self.cache = cache
        self.stats = DispatchStats()
        self._in_flight: dict[str, asyncio.Future[GenericResponse]] = {}
        self._to_store: list[tuple[str, dict]] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, serving: LLMServingABC, request: GenericRequest) -> asyncio.Future[GenericResponse]:
        self.stats.submitted += 1
        key = request.key
        future = self._in_flight.get(key)
        if future is not None:
            self.stats.joined_in_flight += 1
            return future
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            future.set_result(GenericResponse.from_cache(cached))
            return future
        self._in_flight[key] = future
        task = loop.create_task(self._send(serving, request, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    def store(self, key: str, response: GenericResponse) -> None:
        """Queue a response for the request cache; written before the loop's next turn ends."""
        self._to_store.append((key, response.to_cache()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._to_store:
            items, self._to_store = self._to_store, []
            self.cache.put_many(items)
            faults.crash_if("after_cache_put")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.flush()

    async def _send(
        self, serving: LLMServingABC, request: GenericRequest, future: asyncio.Future[GenericResponse]
    ) -> None:
        try:
            response = await self._send_with_retries(serving, request)
        except ServingError as exc:
            self.stats.failed += 1
            kind = f"HTTP {exc.status}" if exc.status else type(exc).__name__
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
            if not future.done():
                future.set_exception(exc)
        except BaseException as exc:  # cancellation or a bug: never leave the future hanging
            if not future.done():
                future.set_exception(ServingError(f"request aborted: {exc!r}"))
            raise
        else:
            self.stats.prompt_tokens += response.prompt_tokens
            self.stats.completion_tokens += response.completion_tokens
            self.store(request.key, response)
            if not future.done():
                future.set_result(response)
        finally:
            self._in_flight.pop(request.key, None)

    async def _send_with_retries(self, serving: LLMServingABC, request: GenericRequest) -> GenericResponse:
        policy = serving.retry
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            async with serving.slots():
                self.stats.in_flight += 1
                self.stats.sent += 1
                try:
                    return await serving.send_once(request)
                except ServingError as exc:
                    error = exc
                finally:
                    self.stats.in_flight -= 1
            elapsed = time.monotonic() - started
            if not error.retryable or attempt >= policy.max_attempts or elapsed >= policy.max_total_seconds:
                if error.retryable:
                    raise ServingError(
                        f"gave up after {attempt} attempts over {elapsed:.1f}s: {error}", status=error.status
                    ) from None
                raise error
            self.stats.retries += 1
            delay = policy.delay(attempt, getattr(error, "retry_after", None))
            log.debug("retrying %s in %.2fs after: %s", request.key[:12], delay, error)
            await asyncio.sleep(delay)
