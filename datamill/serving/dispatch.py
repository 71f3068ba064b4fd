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
from typing import Any

import orjson

from datamill.core.request_cache import RequestCache
from datamill.errors import ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.types import GenericRequest, GenericResponse

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0


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
    cost_usd: float = 0.0
    rate_limited: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class RequestDispatcher:
    """Cache lookup, in-run de-duplication, concurrency and retries for online requests.

    Responses are written to the request cache once per event-loop turn (``flush``); until
    the write lands, a response stays in ``_unpersisted`` so an identical request meanwhile is
    still answered without a call.
    """

    def __init__(self, cache: RequestCache) -> None:
        self.cache = cache
        self.stats = DispatchStats()
        self._in_flight: dict[str, asyncio.Future[GenericResponse]] = {}
        self._unpersisted: dict[str, GenericResponse] = {}
        self._to_store: list[tuple[str, dict[str, Any] | str]] = []
        self._flush_scheduled = False
        self._write_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_wire: set[asyncio.Task[None]] = set()
        self._fatal: dict[int, ServingError] = {}
        # Offline (Batch API) steps: requests whose lines failed for good, and keys whose
        # batch responses were cached but not yet counted in a commit's tokens and cost.
        self.offline_failures: dict[str, str] = {}
        self.offline_fresh: set[str] = set()

    def add_offline(self, result: Any) -> None:
        """Take an ``OfflineStepResult``: its failures and not-yet-counted responses."""
        self.offline_failures.update(result.failures)
        self.offline_fresh.update(result.fresh)

    def submit(self, serving: LLMServingABC, request: GenericRequest) -> asyncio.Future[GenericResponse]:
        if self._write_error is not None:  # a cache write failed in a loop callback: stop here
            raise self._write_error
        self.stats.submitted += 1
        key = request.key
        future = self._in_flight.get(key)
        if future is not None:
            self.stats.joined_in_flight += 1
            return future
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        recent = self._unpersisted.get(key)
        cached = self.cache.get(key) if recent is None else recent.to_cache()
        if cached is not None:
            self.stats.cache_hits += 1
            response = GenericResponse.from_cache(cached)
            if response.offline and key in self.offline_fresh:
                self.offline_fresh.discard(key)
                response.cached = False  # answered by a batch job: its cost is this commit's
                self.stats.cost_usd += serving.cost_usd(response)
            future.set_result(response)
            return future
        if serving.use_offline_batch_generation:
            error = self.offline_failures.get(key)
            if error is None:
                raise ServingError(
                    f"bug: offline serving {serving.model_name!r} has no batch answer for request "
                    f"{key[:12]}; the offline path must settle every request before the step runs"
                )
            future.set_exception(ServingError(error))
            return future
        self._in_flight[key] = future
        task = loop.create_task(self._send(serving, request, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    def store(self, key: str, response: GenericResponse) -> None:
        """Queue a response for the request cache; handed to the writer in this loop turn."""
        self._to_store.append((key, orjson.dumps(response.to_cache()).decode()))
        self._unpersisted[key] = response
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write every response that arrived in this loop turn to the request cache, in one
        transaction. It runs as a loop callback, where a raised error would only be logged:
        a failed write keeps its responses queued (still answered from memory) and its error
        is raised by the next ``submit`` and by ``close``."""
        self._flush_scheduled = False
        if not self._to_store or self._write_error is not None:
            return
        items, self._to_store = self._to_store, []
        try:
            self.cache.put_many(items)
        except Exception as exc:  # e.g. a full disk: the run must stop and say so
            self._to_store = items + self._to_store
            self._write_error = exc
            return
        self._forget(items)

    def _forget(self, items: list[tuple[str, dict[str, Any] | str]]) -> None:
        for key, _ in items:
            self._unpersisted.pop(key, None)

    async def close(self) -> None:
        """Stop every request; a run that stops early (an error, Ctrl-C) lets the requests
        already on the wire finish for up to ``DRAIN_SECONDS`` and caches their responses, as
        the provider answers (and bills) them anyway. Requests not yet sent are cancelled.
        """
        tasks = list(self._tasks)
        on_wire = [task for task in tasks if task in self._on_wire]
        for task in tasks:
            if task not in self._on_wire:
                task.cancel()
        if on_wire:
            log.info("waiting up to %.0fs for %d request(s) already sent", DRAIN_SECONDS, len(on_wire))
            await asyncio.wait(on_wire, timeout=DRAIN_SECONDS)
            for task in on_wire:
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.flush()
        if self._write_error is not None:
            raise self._write_error

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
                future.exception()  # its batch reads it; if the run stopped first, nobody will
        except BaseException as exc:  # cancellation or a bug: never leave the future hanging
            if not future.done():
                # A bug reaches its batch as itself and stops the run; only a cancelled
                # request becomes a provider-style failure.
                cancelled = isinstance(exc, asyncio.CancelledError)
                future.set_exception(ServingError(f"request aborted: {exc!r}") if cancelled else exc)
                future.exception()  # its batch was abandoned too: nobody is left to read it
            raise
        else:
            self.stats.prompt_tokens += response.prompt_tokens
            self.stats.completion_tokens += response.completion_tokens
            self.store(request.key, response)
            if not future.done():
                future.set_result(response)
        finally:
            self._in_flight.pop(request.key, None)

    def _raise_if_fatal(self, serving: LLMServingABC) -> None:
        """After a fatal error (a rejected key) the serving sends nothing more this run."""
        error = self._fatal.get(id(serving))
        if error is not None:
            raise error

    async def _send_with_retries(self, serving: LLMServingABC, request: GenericRequest) -> GenericResponse:
        """Send under the serving's limits; retry what can be retried, within the policy's bounds.

        A 429 pauses the whole serving (``ServingLimiter.record_rate_limited``), so its retry
        waits in the limiter rather than in its own sleep; 429s are bounded by
        ``policy.max_rate_limited`` and the total time, other failures by ``max_attempts``.
        """
        policy = serving.retry
        limiter = serving.limiter
        estimate = serving.estimate_tokens(request) if limiter.tokens is not None else 0
        started = time.monotonic()
        attempt = 0
        rate_limited = 0
        while True:
            self._raise_if_fatal(serving)
            await limiter.acquire(estimate)
            try:
                self._raise_if_fatal(serving)
            except ServingError:
                limiter.release()
                raise
            self.stats.in_flight += 1
            self.stats.sent += 1
            task = asyncio.current_task()
            self._on_wire.add(task)  # type: ignore[arg-type]
            try:
                response = await serving.send_once(request)
            except ServingError as exc:
                error = exc
            else:
                limiter.record_success(estimate, response.prompt_tokens + response.completion_tokens)
                self.stats.cost_usd += serving.cost_usd(response)
                return response
            finally:
                self._on_wire.discard(task)  # type: ignore[arg-type]
                self.stats.in_flight -= 1
                limiter.release()
            elapsed = time.monotonic() - started
            if getattr(error, "fatal", False):
                self._fatal.setdefault(id(serving), error)
            if error.status == 429:
                rate_limited += 1
                self.stats.rate_limited += 1
                limiter.record_rate_limited(
                    getattr(error, "retry_after", None), getattr(error, "provider_rpm", None)
                )
                exhausted = rate_limited >= policy.max_rate_limited
            else:
                attempt += 1
                exhausted = attempt >= policy.max_attempts
            if not error.retryable or exhausted or elapsed >= policy.max_total_seconds:
                if error.retryable:
                    raise ServingError(
                        f"gave up after {attempt + rate_limited} attempts over {elapsed:.1f}s: {error}",
                        status=error.status,
                    ) from None
                raise error
            self.stats.retries += 1
            if error.status == 429:
                log.debug("rate limited on %s; the serving pauses: %s", request.key[:12], error)
                continue
            delay = policy.delay(attempt, getattr(error, "retry_after", None))
            log.debug("retrying %s in %.2fs after: %s", request.key[:12], delay, error)
            await asyncio.sleep(delay)
