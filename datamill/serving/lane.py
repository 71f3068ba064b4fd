"""A send lane: the worker coroutines that send one serving's requests, with retries.

Each serving gets one lane of up to ``max_workers`` long-lived workers that take requests from
a queue in submission order. Under load a worker that finishes a request picks up the next
one at once, so a request costs no task creation, no scheduling and no wait-and-wake of a
semaphore: the lane is as cheap per request as a hand-written loop of ``max_workers``
coroutines around one HTTP session. Workers are started as requests arrive and never exceed
``max_workers``; the serving's ``ServingLimiter`` still gates each attempt (its adaptive limit
after a 429, RPM and TPM pacing).

A failed attempt that may be retried does not hold its worker while it backs off: the job is
put back on the queue when its delay has passed (a 429 at once, since the limiter pauses the
whole serving). A failure no row can fix (connection refused, 404, a refused key: see
``datamill.serving.breaker``) stops the lane at once: every queued and backing-off request
fails with one ``ServingStoppedError`` that says what to check. ``stop`` ends the lane: queued and backing-off requests fail as aborted,
attempts already on the wire may finish (the provider answers and bills them anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from datamill.errors import DatamillError, ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.breaker import CircuitBreaker, stop_error
from datamill.serving.types import GenericRequest, GenericResponse

if TYPE_CHECKING:
    from datamill.serving.dispatch import DispatchStats

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class SendJob:
    """One request on its way: its future, and what its retries have used so far."""

    request: GenericRequest
    future: asyncio.Future[GenericResponse]
    step: int | None = None
    serving: LLMServingABC = field(default=None)  # type: ignore[assignment]  # set by the lane
    started: float = field(default_factory=time.monotonic)
    estimate: int = 0
    attempts: int = 0
    rate_limited: int = 0


class SendLane:
    """The workers, the queue and the retry schedule of one serving's online requests.

    ``stats`` is the dispatcher's ``DispatchStats`` (sent, retries, failures);
    ``on_response`` receives each answered job with its response and resolves its future;
    ``on_failed`` hears of each job whose future the lane failed.
    """

    def __init__(
        self,
        serving: LLMServingABC,
        stats: DispatchStats,
        on_response: Callable[[SendJob, GenericResponse], None],
        on_failed: Callable[[SendJob], None],
        *,
        gate: Callable[[], BaseException | None] | None = None,
    ) -> None:
        self.serving = serving
        self.gate = gate
        self.stats = stats
        self.on_response = on_response
        self.on_failed = on_failed
        self.fatal: BaseException | None = None
        self.breaker = CircuitBreaker()
        self._jobs: deque[SendJob] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._on_wire: set[asyncio.Task[None]] = set()
        self._backing_off: dict[SendJob, asyncio.TimerHandle] = {}
        self._stopping = False

    def put(self, job: SendJob) -> None:
        """Queue ``job``; wake an idle worker, or start one while fewer than ``max_workers``."""
        job.serving = self.serving
        if self.serving.limiter.tokens is not None:
            job.estimate = self.serving.estimate_tokens(job.request)
        self._enqueue(job)

    def _enqueue(self, job: SendJob, *, first: bool = False) -> None:
        if first:
            self._jobs.appendleft(job)
        else:
            self._jobs.append(job)
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        if len(self._workers) < self.serving.max_workers:
            task = asyncio.get_running_loop().create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        jobs = self._jobs
        worker = asyncio.current_task()
        assert worker is not None
        while not self._stopping:
            if not jobs:
                waiter = asyncio.get_running_loop().create_future()
                self._idle.append(waiter)
                await waiter
                continue
            job = jobs.popleft()
            if job.future.done():  # settled elsewhere (cancelled): nothing to send
                self.on_failed(job)
                continue
            await self._attempt(job, worker)

    async def _attempt(self, job: SendJob, worker: asyncio.Task[None]) -> None:
        """One attempt at ``job``: answered, failed for good, or scheduled again."""
        serving, stats = self.serving, self.stats
        limiter = serving.limiter
        try:
            if self.fatal is not None:
                raise self.fatal
            await limiter.acquire(job.estimate)
            refusal = self.fatal or (self.gate() if self.gate is not None else None)
            if refusal is not None:
                limiter.release()
                raise refusal
        except ServingError as exc:
            self._settle(job, exc)
            return
        except DatamillError as exc:  # the budget or a failed ledger write: not the row's fault
            self._settle(job, exc)
            return
        except BaseException as exc:
            self._abort(job, exc)
            raise
        stats.in_flight += 1
        stats.sent += 1
        self._on_wire.add(worker)
        try:
            response = await serving.send_once(job.request)
        except ServingError as exc:
            error: ServingError = exc
        except BaseException as exc:  # cancelled, or a bug: never leave the future hanging
            self._abort(job, exc)
            if isinstance(exc, Exception):
                return  # a bug reaches its batch as itself and stops the run there
            raise
        else:
            limiter.record_success(job.estimate, response.prompt_tokens + response.completion_tokens)
            self.breaker.record_success()
            self.on_response(job, response)
            return
        finally:
            self._on_wire.discard(worker)
            stats.in_flight -= 1
            limiter.release()
        self._retry_or_fail(job, error)

    def _retry_or_fail(self, job: SendJob, error: ServingError) -> None:
        """Schedule ``job`` again if ``error`` can be retried within the policy, else fail it.

        A 429 pauses the whole serving (``ServingLimiter.record_rate_limited``), so its retry is
        queued at once and waits in the limiter; 429s are bounded by ``max_rate_limited`` and
        the total time, other failures by ``max_attempts``.
        """
        policy = self.serving.retry
        stats = self.stats
        elapsed = time.monotonic() - job.started
        if self.fatal is not None:
            self._settle(job, self.fatal)
            return
        if self.breaker.record_failure(error) or getattr(error, "fatal", False):
            self._settle(job, self._trip(error))
            return
        if error.status == 429:
            job.rate_limited += 1
            self.serving.limiter.record_rate_limited(
                getattr(error, "retry_after", None), getattr(error, "provider_rpm", None)
            )
            exhausted = job.rate_limited >= policy.max_rate_limited
        else:
            job.attempts += 1
            exhausted = job.attempts >= policy.max_attempts
        if not error.retryable or exhausted or elapsed >= policy.max_total_seconds or self._stopping:
            if error.retryable:
                error = ServingError(
                    f"gave up after {job.attempts + job.rate_limited} attempts over {elapsed:.1f}s: {error}",
                    status=error.status,
                )
            self._settle(job, error)
            return
        stats.retries += 1
        if error.status == 429:
            log.debug("rate limited on %s; the serving pauses: %s", job.request.key[:12], error)
            self._enqueue(job, first=True)
            return
        delay = policy.delay(job.attempts, getattr(error, "retry_after", None))
        log.debug("retrying %s in %.2fs after: %s", job.request.key[:12], delay, error)
        self._backing_off[job] = asyncio.get_running_loop().call_later(delay, self._back_off_ended, job)

    def _trip(self, error: ServingError) -> ServingError:
        """Stop the serving on ``error``: fail every queued and backing-off request with one
        message; workers send nothing more (``_attempt`` checks ``fatal``)."""
        fatal = self.fatal = stop_error(self.serving, error, self.breaker.failures)
        for job, handle in list(self._backing_off.items()):
            handle.cancel()
            self._settle(job, fatal)
        self._backing_off.clear()
        while self._jobs:
            self._settle(self._jobs.popleft(), fatal)
        return fatal

    def _back_off_ended(self, job: SendJob) -> None:
        if self._backing_off.pop(job, None) is not None and not self._stopping:
            self._enqueue(job, first=True)

    def _abort(self, job: SendJob, exc: BaseException) -> None:
        """``job`` stopped by ``exc``: a cancellation becomes a provider-style failure, a bug
        reaches the batch as itself."""
        cancelled = isinstance(exc, asyncio.CancelledError)
        self._settle(job, ServingError(f"request aborted: {exc!r}") if cancelled else exc)

    def _settle(self, job: SendJob, error: BaseException) -> None:
        if not job.future.done():
            job.future.set_exception(error)
            job.future.exception()  # its batch reads it; if the run stopped first, nobody will
        self.on_failed(job)

    def halt(self, error: BaseException) -> None:
        """Send nothing more: every later attempt and every queued job fails with ``error``."""
        self.fatal = self.fatal or error
        while self._jobs:
            self._settle(self._jobs.popleft(), error)

    async def stop(self, drain_seconds: float) -> None:
        """Fail what is queued or backing off, let attempts on the wire finish for up to
        ``drain_seconds`` (their responses are reported as usual), then cancel the rest."""
        self._stopping = True
        aborted = asyncio.CancelledError("the run stopped")
        for job, handle in list(self._backing_off.items()):
            handle.cancel()
            self._abort(job, aborted)
        self._backing_off.clear()
        while self._jobs:
            self._abort(self._jobs.popleft(), aborted)
        on_wire = list(self._on_wire)
        for worker in list(self._workers):
            if worker not in self._on_wire:
                worker.cancel()
        if on_wire:
            log.info("waiting up to %.0fs for %d request(s) already sent", drain_seconds, len(on_wire))
            await asyncio.wait(on_wire, timeout=drain_seconds)
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
