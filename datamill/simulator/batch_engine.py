"""The life of a batch job in simulated time, shared by OpenAI Batches and Anthropic Message Batches.

One asyncio task per job walks it through its phases (``validating`` -> ``in_progress`` ->
``finalizing`` -> ended). While in progress, lines finish at an even pace over
``batch_processing_seconds``: every tick the task answers the lines due by now, so
``request_counts`` grow the way a real provider's do, and a job read at any moment shows a
consistent state. No per-line timers; the work per tick is bounded so a big job never stalls
the server's event loop.

A job ends one of four ways: ``completed`` (every line answered or failed), ``failed`` (its
input did not validate), ``expired`` (``batch_expiry_seconds`` after creation; unfinished lines
become ``expired``) or ``cancelled`` (after ``cancelling``; unfinished lines become ``canceled``).
Providers format the results in their own shapes through the job's ``on_end`` callback, which
runs before the job is seen as ended, so its files exist by the time a client sees the status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from datamill.simulator.online import Answerer
from datamill.simulator.replies import InvalidRequest
from datamill.simulator.state import SimulatorState

logger = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
ERRORED = "errored"
EXPIRED = "expired"
CANCELED = "canceled"

VALIDATING = "validating"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
CANCELLING = "cancelling"
ENDED = "ended"

COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

_CHUNK = 500
T = TypeVar("T")


@dataclass
class BatchItem:
    """One request of a batch: the client's ``custom_id`` and the request body."""

    custom_id: str
    body: Any


@dataclass
class ItemResult:
    """How one line ended. ``response`` is the reply body when it succeeded."""

    custom_id: str
    outcome: str
    response: dict[str, Any] | None = None
    status_code: int | None = None
    message: str | None = None


@dataclass
class BatchJob:
    """A batch's progress, provider-neutral. Providers keep their own fields beside it."""

    serial: int
    items: list[BatchItem]
    answer: Answerer
    seed: int
    expiry_seconds: float | None
    on_end: Callable[[BatchJob], None] = field(default=lambda job: None)
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    phase: str = VALIDATING
    ending: str | None = None
    created_at: float = field(default_factory=time.time)
    created_mono: float = field(default_factory=time.monotonic)
    times: dict[str, float] = field(default_factory=dict)
    results: list[ItemResult] = field(default_factory=list)
    succeeded: int = 0
    errored: int = 0
    cancel_requested: bool = False
    #: The caller's key, quoted in failed lines' messages (the ``echo_api_key`` knob), else None.
    echo_key: str | None = None

    @property
    def status(self) -> str:
        """The phase while running, then how it ended (``completed``, ``failed``, ...)."""
        return self.ending if self.phase == ENDED and self.ending else self.phase

    @property
    def unfinished(self) -> int:
        """Lines neither answered nor failed yet."""
        return len(self.items) - len(self.results)

    def request_cancel(self) -> bool:
        """Move a running job to ``cancelling``; False when it is already finalizing or ended."""
        if self.phase not in (VALIDATING, IN_PROGRESS):
            return False
        self.cancel_requested = True
        self.phase = CANCELLING
        self.times[CANCELLING] = time.time()
        return True


def start_job(job: BatchJob, state: SimulatorState) -> None:
    """Run ``job`` in the background on the server's loop."""
    state.spawn(_run(job, state))


def shuffled(items: Sequence[T], seed: str) -> list[T]:
    """A deterministic shuffle that is never the input order (for two or more items)."""
    out = list(items)
    random.Random(seed).shuffle(out)
    if len(out) > 1 and all(a is b for a, b in zip(out, items, strict=True)):
        out = out[1:] + out[:1]
    return out


async def _run(job: BatchJob, state: SimulatorState) -> None:
    try:
        if job.phase == VALIDATING:
            await _sleep_unless_cancelled(job, state.config.batch_validating_seconds)
            if job.cancel_requested:
                await _finish_cancelled(job, state)
                return
            if job.validation_errors:
                _end(job, FAILED)
                return
            job.phase = IN_PROGRESS
        job.times[IN_PROGRESS] = time.time()
        await _process(job, state)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("simulated batch job %s crashed", job.serial)
        job.validation_errors = [{"code": "internal_error", "message": "simulator crashed", "line": None}]
        _end(job, FAILED)


async def _process(job: BatchJob, state: SimulatorState) -> None:
    rng = random.Random(f"{job.seed}:{job.serial}")
    total = len(job.items)
    start = time.monotonic()
    expires = job.created_mono + job.expiry_seconds if job.expiry_seconds is not None else None
    while True:
        if job.cancel_requested:
            await _finish_cancelled(job, state)
            return
        now = time.monotonic()
        if expires is not None and now >= expires:
            _finish_unanswered(job, EXPIRED)
            _end(job, EXPIRED)
            return
        duration = state.config.batch_processing_seconds
        due = total if duration <= 0 else min(total, int(total * (now - start) / duration))
        while len(job.results) < due and not job.cancel_requested:
            _answer_lines(job, state, rng, min(due, len(job.results) + _CHUNK))
            if len(job.results) < due:
                await asyncio.sleep(0)
        if len(job.results) >= total:
            break
        tick = min(max(duration / 50, 0.005), 0.1)
        if expires is not None:
            tick = min(tick, max(0.0, expires - now))
        await asyncio.sleep(tick)
    job.phase = FINALIZING
    job.times[FINALIZING] = time.time()
    if state.config.batch_finalizing_seconds > 0:
        await asyncio.sleep(state.config.batch_finalizing_seconds)
    _end(job, COMPLETED)


def _answer_lines(job: BatchJob, state: SimulatorState, rng: random.Random, stop: int) -> None:
    failed_rate = state.config.batch_failed_line_rate
    accounting = state.accounting
    for item in job.items[len(job.results) : stop]:
        try:
            answer = job.answer(item.body, state)
        except InvalidRequest as exc:
            job.results.append(ItemResult(item.custom_id, ERRORED, status_code=400, message=str(exc)))
            job.errored += 1
            continue
        if failed_rate > 0.0 and rng.random() < failed_rate:
            message = "Internal server error"
            if job.echo_key:
                message += f" (request made with key {job.echo_key})"
            job.results.append(ItemResult(item.custom_id, ERRORED, status_code=500, message=message))
            job.errored += 1
            continue
        accounting.record_batch_answer(
            answer.request_hash, item.custom_id, answer.prompt_tokens, answer.completion_tokens
        )
        job.results.append(ItemResult(item.custom_id, SUCCEEDED, response=answer.body, status_code=200))
        job.succeeded += 1


async def _sleep_unless_cancelled(job: BatchJob, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not job.cancel_requested:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.05))


async def _finish_cancelled(job: BatchJob, state: SimulatorState) -> None:
    if state.config.batch_finalizing_seconds > 0:
        await asyncio.sleep(state.config.batch_finalizing_seconds)
    _finish_unanswered(job, CANCELED)
    _end(job, CANCELLED)


def _finish_unanswered(job: BatchJob, outcome: str) -> None:
    for item in job.items[len(job.results) :]:
        job.results.append(ItemResult(item.custom_id, outcome))


def _end(job: BatchJob, ending: str) -> None:
    job.ending = ending
    job.times[ending] = time.time()
    job.on_end(job)
    job.phase = ENDED
