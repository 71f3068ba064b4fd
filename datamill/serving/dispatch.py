"""The request dispatcher: the one path every online model call takes.

For each request it (1) joins an identical request already in flight, (2) answers from the
request cache, or (3) queues it on its serving's send lane (``datamill.serving.lane``: the
workers that send under the serving's limits and retry what can be retried), and hands each
response to the ledger (``datamill.core.ledger``) the moment it arrives, with what it cost:
journaled in that loop turn, stored with its spend by the ledger's writer.

``submit`` returns a future at once, so a batch can put all its requests in flight and the
engine can keep requests flowing across batch boundaries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from datamill.core.ledger import Ledger
from datamill.core.spend import PaidResponse
from datamill.errors import ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.lane import SendJob, SendLane
from datamill.serving.types import GenericRequest, GenericResponse

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0


@dataclass
class DispatchStats:
    """Counters for the run summary and the progress display."""

    cache_hits: int = 0
    sent: int = 0
    retries: int = 0
    in_flight: int = 0


class RequestDispatcher:
    """Cache lookup and in-run de-duplication for online requests; what must be sent goes to
    its serving's ``SendLane`` (concurrency, limits, retries).

    ``send_gate`` is asked before each send; an error it returns fails the request unsent
    (the budget uses it). A ledger write failure halts every lane: nothing more is sent.
    """

    def __init__(
        self, ledger: Ledger, *, send_gate: Callable[[], BaseException | None] | None = None
    ) -> None:
        self.ledger = ledger
        self.stats = DispatchStats()
        self.send_gate = send_gate
        self._in_flight: dict[str, asyncio.Future[GenericResponse]] = {}
        self._lanes: dict[int, SendLane] = {}
        self._halted: BaseException | None = None
        #: Offline (Batch API) steps: requests whose lines failed for good, by key.
        self.offline_failures: dict[str, str] = {}
        ledger.on_error.append(self.halt)

    def submit(
        self, serving: LLMServingABC, request: GenericRequest, *, step: int | None = None
    ) -> asyncio.Future[GenericResponse]:
        """The response of ``request`` (``step``: whose spend a paid answer is)."""
        if self._halted is not None:
            raise self._halted
        key = request.key
        future = self._in_flight.get(key)
        if future is not None:
            return future
        future = asyncio.get_running_loop().create_future()
        cached = self.ledger.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            future.set_result(GenericResponse.from_cache(cached))
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
            lane = self._lanes[id(serving)] = SendLane(
                serving, self.stats, self._answered, self._failed, gate=self.send_gate
            )
        lane.put(SendJob(request, future, step=step))
        return future

    def _answered(self, job: SendJob, response: GenericResponse) -> None:
        """A lane's response: to the ledger with its cost in this loop turn, then to its batch."""
        key = job.request.key
        self._in_flight.pop(key, None)
        serving = job.serving
        paid = PaidResponse(
            job.step,
            False,
            response.model or serving.model_name,
            response.prompt_tokens,
            response.completion_tokens,
            serving.cost_usd(response),
        )
        self.ledger.record_response(key, response.to_cache(), paid)
        if not job.future.done():
            job.future.set_result(response)

    def _failed(self, job: SendJob) -> None:
        """A lane gave up on ``job``: an identical request submitted later is sent again."""
        self._in_flight.pop(job.request.key, None)

    def halt(self, error: BaseException) -> None:
        """Send nothing more: ``error`` (a failed ledger write) fails every queued request and
        is raised by the next ``submit``; requests on the wire finish and are journaled."""
        self._halted = self._halted or error
        for lane in self._lanes.values():
            lane.halt(error)

    async def close(self) -> None:
        """Stop every request; a run that stops early (an error, Ctrl-C) lets the requests
        already on the wire finish for up to ``DRAIN_SECONDS`` and records their responses, as
        the provider answers (and bills) them anyway. Requests not yet sent are cancelled.
        """
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            await lane.stop(DRAIN_SECONDS)
