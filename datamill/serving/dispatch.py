"""The request dispatcher: the one path every online model call takes.

For each request it (1) joins an identical request already in flight, (2) answers from the
request cache, or (3) queues it on its serving's send lane (``datamill.serving.lane``: the
workers that send under the serving's limits and retry what can be retried), and stores the
response in the cache as soon as it arrives (``datamill.serving.cache_writer``).

``submit`` returns a future at once, so a batch can put all its requests in flight and the
engine can keep requests flowing across batch boundaries.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from datamill.core.request_cache import RequestCache
from datamill.errors import ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.cache_writer import CacheWriter
from datamill.serving.lane import SendJob, SendLane
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
    """Cache lookup and in-run de-duplication for online requests; what must be sent goes to
    its serving's ``SendLane`` (concurrency, limits, retries).

    Responses go to the request cache through a ``CacheWriter`` (grouped, on its own
    thread); until a write lands, the response answers an identical request from memory.
    """

    def __init__(self, cache: RequestCache) -> None:
        self.cache = cache
        self.stats = DispatchStats()
        self._in_flight: dict[str, asyncio.Future[GenericResponse]] = {}
        self.cache_writer = CacheWriter(cache)
        self._lanes: dict[int, SendLane] = {}
        # Offline (Batch API) steps: requests whose lines failed for good, and keys whose
        # batch responses were cached but not yet counted in a commit's tokens and cost.
        self.offline_failures: dict[str, str] = {}
        self.offline_fresh: set[str] = set()

    def add_offline(self, result: Any) -> None:
        """Take an ``OfflineStepResult``: its failures and not-yet-counted responses."""
        self.offline_failures.update(result.failures)
        self.offline_fresh.update(result.fresh)

    def submit(self, serving: LLMServingABC, request: GenericRequest) -> asyncio.Future[GenericResponse]:
        if self.cache_writer.error is not None:  # a cache write failed: stop here
            raise self.cache_writer.error
        self.stats.submitted += 1
        key = request.key
        future = self._in_flight.get(key)
        if future is not None:
            self.stats.joined_in_flight += 1
            return future
        future = asyncio.get_running_loop().create_future()
        recent = self.cache_writer.unwritten(key)
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
            # The offline path settles every request it walked (invalid replies' retries too);
            # one it could not foresee fails its row, retried on resume, and stops nothing.
            error = self.offline_failures.get(key) or (
                f"no Batch API answer for request {key[:12]} of offline serving "
                f"{serving.model_name!r}; rerun the pipeline to submit it"
            )
            future.set_exception(ServingError(error))
            return future
        self._in_flight[key] = future
        lane = self._lanes.get(id(serving))
        if lane is None:
            lane = self._lanes[id(serving)] = SendLane(serving, self.stats, self._answered, self._failed)
        lane.put(SendJob(request, future))
        return future

    def _answered(self, job: SendJob, response: GenericResponse) -> None:
        """A lane's response: queued for the cache in this loop turn, then handed to its batch."""
        key = job.request.key
        self._in_flight.pop(key, None)
        self.cache_writer.store(key, response)
        if not job.future.done():
            job.future.set_result(response)

    def _failed(self, job: SendJob) -> None:
        """A lane gave up on ``job``: an identical request submitted later is sent again."""
        self._in_flight.pop(job.request.key, None)

    async def close(self) -> None:
        """Stop every request; a run that stops early (an error, Ctrl-C) lets the requests
        already on the wire finish for up to ``DRAIN_SECONDS`` and caches their responses, as
        the provider answers (and bills) them anyway. Requests not yet sent are cancelled.
        """
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            await lane.stop(DRAIN_SECONDS)
        await self.cache_writer.close()
