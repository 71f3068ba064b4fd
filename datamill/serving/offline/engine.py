"""Running one pipeline step through a provider's Batch API.

The runner calls ``prepare_offline_step`` before the batch loop of a step whose serving has
``use_offline_batch_generation=True``. It makes sure every request of the step's remaining rows
is either in the request cache or recorded as failed, or raises
``OfflineBatchGenerationNotFinished``; the step's batches are then committed as usual, the
dispatcher answering each request from the cache.

Order of a call, every record written before the next action (see ``store.py``):

1. Requests that failed in an earlier run and were committed as failed rows are released, so a
   resume retries them.
2. Chunks whose job id was never recorded (a crash) are settled: a job tagged with the chunk
   is adopted; while a create sent for the chunk may still land (``CREATE_GRACE_SECONDS``),
   the provider is asked again rather than a second job created; then an uploaded file is
   reused to create the one job; otherwise nothing reached the provider and the chunk is
   abandoned, its requests going back to the pool. Never two jobs for one chunk.
3. Recorded jobs are polled. An ended job's output and error lines are joined to their
   requests by ``custom_id`` into the request cache; failed or expired lines go back to the
   pool until ``max_attempts``, then stay failed with the provider's error. The unanswered
   requests of a cancelled job are held, failing their rows with a message saying so, until
   the user asks for them again (``datamill jobs CACHE --resubmit-cancelled``): a cancel is a
   decision to stop paying, which a plain rerun must not undo. A job that failed validation
   fails its requests with the provider's messages.
4. The step's remaining requests that are neither cached, in a live chunk nor failed are split
   by the provider's limits and submitted, one chunk at a time.
5. With jobs still running: wait and go back to 3 (``block_until_done``), or raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from datamill.core import faults
from datamill.core.ledger import Ledger
from datamill.core.spend import PaidResponse
from datamill.errors import ConfigError, OfflineBatchGenerationNotFinished, advice
from datamill.serving.offline.provider import BatchProvider, BatchProviderError, JobInfo, LineResult
from datamill.serving.offline.store import LIVE_STATES, ChunkRecord, OfflineStore
from datamill.serving.types import GenericRequest, GenericResponse

log = logging.getLogger("datamill.offline")

#: Submissions of one request (the first included) before its failure is final.
MAX_ATTEMPTS = 3
#: How long after a create was sent without an answer (Ctrl+C, a kill, a timeout) its job may
#: still appear: a provider can commit a create well after the client gave up. Until then a
#: rerun asks the provider again every ``LOOK_AGAIN_SECONDS`` instead of creating a second job
#: (which would pay for the whole chunk twice); after it, the create is taken to have failed.
CREATE_GRACE_SECONDS = 60.0
LOOK_AGAIN_SECONDS = 1.0
#: What to do about requests a cancelled job left unanswered: a rerun alone does not send them.
RESUBMIT_CANCELLED = "`datamill jobs CACHE_DIR --resubmit-cancelled` sends them again with the next run"
_LOOKUP_BATCH = 500


@dataclass
class OfflineStepResult:
    """What the dispatcher needs once a step's offline requests are settled."""

    step: int
    store: OfflineStore
    failures: dict[str, str] = field(default_factory=dict)

    async def finish(self) -> None:
        """Call after the step's batches are committed: its failures are now reported."""
        await self.store.finish_step(self.step)


async def prepare_offline_step(
    serving: Any,
    *,
    step: int,
    requests: Callable[[], Iterable[GenericRequest]],
    ledger: Ledger,
    label: str = "",
    max_attempts: int = MAX_ATTEMPTS,
    recheck_answers: bool = False,
) -> OfflineStepResult:
    """Settle every request of a step through the Batch API, or raise ``...NotFinished``.

    ``serving`` provides ``batch_provider()``, ``cost_usd`` and
    ``offline_batch_generation_block_until_done``; ``requests`` returns a fresh iterator over
    the step's remaining requests each time it is called (it is walked once per round that may
    need to submit). ``recheck_answers``: the iterator's requests depend on the answers
    (retries of invalid replies), so it is walked again after each round that stored answers.
    Every record goes through ``ledger``.
    """
    provider: BatchProvider = serving.batch_provider()
    block = getattr(serving, "offline_batch_generation_block_until_done", None)
    if block is not None and block <= 0:
        raise ConfigError("offline_batch_generation_block_until_done must be a number of seconds > 0")
    store = OfflineStore(ledger.reader.conn, ledger)
    run = _OfflineRun(
        provider, store, ledger, step, requests, label or f"step {step}", max_attempts, recheck_answers
    )
    run.price = serving.cost_usd
    try:
        store.release_reported(step)
        if block is None:
            await run.round(first=True)
        else:
            await run.block(float(block))
        result = OfflineStepResult(step, store, store.failures(step))
        log.info("%s: offline batch results complete (%d failed requests)", run.label, len(result.failures))
        return result
    finally:
        await provider.close()


class _OfflineRun:
    def __init__(
        self,
        provider: BatchProvider,
        store: OfflineStore,
        ledger: Ledger,
        step: int,
        requests: Callable[[], Iterable[GenericRequest]],
        label: str,
        max_attempts: int,
        recheck_answers: bool = False,
    ) -> None:
        self.provider = provider
        self.store = store
        self.ledger = ledger
        #: The serving's ``cost_usd``: what a Batch API answer cost (None: no known price).
        self.price: Callable[[GenericResponse], float | None] = lambda response: None
        self.step = step
        self.requests = requests
        self.label = label
        self.max_attempts = max_attempts
        self.started = time.monotonic()
        self.submitted_now = 0
        self.recheck_answers = recheck_answers

    # --- one pass ------------------------------------------------------------------------

    async def round(self, *, first: bool, raise_if_live: bool = True) -> bool:
        """Settle, poll, ingest and submit once; True when nothing is left running."""
        if first:
            await self.settle_unrecorded()
        ingested = await self.poll()
        if first or (ingested and self.recheck_answers) or self.store.has_retry(self.step):
            await self.submit_remaining()
        live = self.store.chunks(self.step, LIVE_STATES)
        if not live:
            return True
        if raise_if_live:
            raise self.not_finished(live)
        return False

    async def block(self, interval: float) -> None:
        """Poll every ``interval`` seconds until every job has ended; SIGINT stops within a second."""
        stop = asyncio.Event()
        with _sigint_sets(stop):
            first = True
            while True:
                work = asyncio.ensure_future(self.round(first=first, raise_if_live=False))
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                if not work.done():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
                    raise self.not_finished(self.store.chunks(self.step, LIVE_STATES), interrupted=True)
                if work.result():
                    return
                first = False
                self.log_progress()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
                if stop.is_set():
                    raise self.not_finished(self.store.chunks(self.step, LIVE_STATES), interrupted=True)

    # --- crash recovery --------------------------------------------------------------------

    async def settle_unrecorded(self) -> None:
        for chunk in self.store.chunks(self.step, ("intent", "uploaded", "creating")):
            job = await self.find_unrecorded_job(chunk)
            if job is not None:
                log.info(
                    "%s: adopted job %s of chunk %s (its id was not recorded)",
                    self.label,
                    job.id,
                    chunk.chunk_id,
                )
                self.store.record_job(chunk.chunk_id, job)
                continue
            if self.provider.needs_upload:
                file_id = chunk.file_id or await self.provider.find_upload(chunk.chunk_id)
                if file_id and await self.provider.file_exists(file_id):
                    self.store.record_file(chunk.chunk_id, file_id)
                    log.info("%s: reusing uploaded file %s for chunk %s", self.label, file_id, chunk.chunk_id)
                    await self._create(chunk.chunk_id, file_id=file_id)
                    continue
            released = self.store.abandon(chunk.chunk_id)
            log.info(
                "%s: chunk %s never reached the provider; %d requests go back to the pool",
                self.label,
                chunk.chunk_id,
                released,
            )

    async def find_unrecorded_job(self, chunk: ChunkRecord) -> JobInfo | None:
        """The job of ``chunk`` whose id was never recorded, if the provider has it. While a
        create sent for the chunk is younger than ``CREATE_GRACE_SECONDS`` the provider is
        asked again until it shows the job or the period ends."""
        waiting_logged = False
        while True:
            job = await self.provider.find_job(
                chunk.chunk_id,
                created_after=chunk.created_at,
                n_requests=chunk.n_requests,
                known_ids=self.store.known_job_ids(),
            )
            if job is not None:
                return self.redacted(job)
            left = chunk.updated_at + CREATE_GRACE_SECONDS - time.time()
            if chunk.state != "creating" or left <= 0:
                return None
            if not waiting_logged:
                log.info(
                    "%s: the create of chunk %s was sent but never answered; its job may still "
                    "appear, so the provider is asked again for up to %.0fs before creating it again",
                    self.label,
                    chunk.chunk_id,
                    left,
                )
                waiting_logged = True
            await asyncio.sleep(min(LOOK_AGAIN_SECONDS, left))

    # --- polling and ingestion -------------------------------------------------------------

    async def poll(self) -> bool:
        """Poll every live job; ingest the ended ones (True when any was ingested).

        The next job's status and results are fetched while the current one is ingested (one
        job ahead, so at most two jobs' results are in memory): the provider's side of the
        transfer overlaps with parsing and storing on ours.
        """
        chunks = self.store.chunks(self.step, ("submitted",))
        fetches: list[asyncio.Future[tuple[JobInfo, list[LineResult] | None]]] = []
        ingested = False
        try:
            for index, chunk in enumerate(chunks):
                if not fetches:
                    fetches.append(asyncio.ensure_future(self._fetch(chunk)))
                if index + 1 < len(chunks):
                    fetches.append(asyncio.ensure_future(self._fetch(chunks[index + 1])))
                job, lines = await fetches.pop(0)
                if not job.ended:
                    self.store.update_job(chunk.chunk_id, job)
                elif job.status == "failed":
                    self.reject_failed_job(chunk, job)
                else:
                    await self.ingest(chunk, job, lines)
                    ingested = True
        finally:
            for fetch in fetches:
                fetch.cancel()
        return ingested

    async def _fetch(self, chunk: ChunkRecord) -> tuple[JobInfo, list[LineResult] | None]:
        assert chunk.job_id is not None
        job = self.redacted(await self.provider.get_job(chunk.job_id))
        if not job.ended or job.status == "failed":
            return job, None
        return job, await self.provider.results(job)

    def reject_failed_job(self, chunk: ChunkRecord, job: JobInfo) -> None:
        message = (
            f"{self.provider.name} batch job {job.id} failed validation: "
            + ("; ".join(job.errors[:5]) or "no reason given")
            + (f" (and {len(job.errors) - 5} more)" if len(job.errors) > 5 else "")
        )
        log.error("%s: %s", self.label, message)
        self.store.reject(chunk.chunk_id, message, job)

    async def ingest(self, chunk: ChunkRecord, job: JobInfo, lines: list[LineResult] | None = None) -> int:
        """Join an ended job's lines to its requests by ``custom_id`` (never by order) and store
        the answers in the request cache, in one transaction with the job's outcome."""
        expected = self.store.pending_keys(chunk.chunk_id)
        if lines is None:
            lines = await self.provider.results(job)
        failures: dict[str, str] = {}
        answers: dict[str, str] = {}
        for line in lines:
            key = line.key
            if key not in expected:
                continue
            if line.cached is not None:
                answers[key] = line.cached
                failures.pop(key, None)
            elif key not in answers:
                failures[key] = self.provider.redact(f"{self.provider.name} batch {job.id}: {line.error}")
        for key in expected - answers.keys() - failures.keys():
            failures[key] = (
                f"{self.provider.name} batch {job.id} ({job.status}) returned no result for this request"
            )
        if job.status == "cancelled" and failures:
            held = (
                f"{self.provider.name} batch {job.id} was cancelled before answering this request; "
                f"cancelled requests are not resubmitted by a rerun: {RESUBMIT_CANCELLED}"
            )
            failures = dict.fromkeys(failures, held)
            log.warning(
                "%s: job %s was cancelled: %d unanswered request(s) are held, not resubmitted; %s",
                self.label,
                job.id,
                len(failures),
                RESUBMIT_CANCELLED,
            )
        # Sorted keys: the cache's B-tree takes them in order, far cheaper than random inserts.
        # The ledger's writer stores them (SQLite releases the GIL) while the loop fetches the
        # next job's results; ``poll`` awaits each ingest, so records stay in order.
        await self.store.ingest(
            chunk.chunk_id, job, failures, self.max_attempts, sorted(answers.items()), self._spend_of(answers)
        )
        log.info(
            "%s: job %s %s: %d answered, %d failed%s",
            self.label,
            job.id,
            job.status,
            len(answers),
            len(failures),
            " (resubmitted unless out of attempts)" if failures and job.status != "cancelled" else "",
        )
        return len(answers)

    def _spend_of(self, answers: dict[str, str]) -> PaidResponse | None:
        """What ``answers`` (each a succeeded line, billed at the batch price) cost together."""
        if not answers:
            return None
        prompt = completion = 0
        model = ""
        for text in answers.values():
            entry = orjson.loads(text)
            prompt += int(entry.get("prompt_tokens", 0))
            completion += int(entry.get("completion_tokens", 0))
            model = model or str(entry.get("model", ""))
        total = GenericResponse(
            texts=[], prompt_tokens=prompt, completion_tokens=completion, model=model, offline=True
        )
        return PaidResponse(
            self.step, True, model, prompt, completion, self.price(total), requests=len(answers)
        )

    # --- submission ----------------------------------------------------------------------

    async def submit_remaining(self) -> None:
        provider = self.provider
        taken = self.store.taken_keys()
        seen: set[str] = set()
        chunk = _ChunkBuilder(provider)
        candidates: list[GenericRequest] = []

        async def flush_candidates() -> None:
            cached = self.ledger.cached_keys([request.key for request in candidates])
            for request in candidates:
                if request.key in cached:
                    continue
                line = provider.encode_line(request)
                if len(line) + provider.payload_overhead(1) > provider.max_bytes_per_job:
                    raise ConfigError(
                        f"{self.label}: request {request.key[:12]} is {len(line)} bytes, more than one "
                        f"{provider.name} batch may hold ({provider.max_bytes_per_job} bytes)"
                    )
                if not chunk.fits(line):
                    await self.submit_chunk(*chunk.take())
                chunk.add(request.key, line)
            candidates.clear()
            await asyncio.sleep(0)  # let Ctrl-C (blocking mode) through on long scans

        for request in self.requests():
            key = request.key
            if key in seen or key in taken:
                continue
            seen.add(key)
            candidates.append(request)
            if len(candidates) >= _LOOKUP_BATCH:
                await flush_candidates()
        await flush_candidates()
        if chunk.keys:
            await self.submit_chunk(*chunk.take())

    async def submit_chunk(self, keys: list[str], lines: list[bytes]) -> None:
        chunk_id = uuid.uuid4().hex
        payload = self.provider.chunk_payload(lines)
        self.store.record_intent(
            chunk_id,
            step=self.step,
            provider=self.provider.name,
            base_url=self.provider.base_url,
            model=_model_of(lines),
            keys=keys,
            n_bytes=len(payload),
        )
        faults.crash_if("offline_after_intent")
        file_id = None
        if self.provider.needs_upload:
            file_id = await self.provider.upload(chunk_id, payload)
            faults.crash_if("offline_after_upload")
            self.store.record_file(chunk_id, file_id)
        await self._create(chunk_id, file_id=file_id, payload=payload)
        self.submitted_now += 1

    async def _create(
        self, chunk_id: str, *, file_id: str | None = None, payload: bytes | None = None
    ) -> None:
        self.store.record_create_sent(chunk_id)
        try:
            job = await self.provider.create_job(chunk_id, file_id=file_id, payload=payload)
        except BatchProviderError as exc:
            if exc.retryable or exc.status is None:
                raise  # the job may exist: the next run adopts it or creates it, never twice
            message = f"{self.provider.name} refused the batch of chunk {chunk_id}: {exc}"
            log.error("%s: %s", self.label, message)
            self.store.reject(chunk_id, message)
            return
        faults.crash_if("offline_after_create")
        job = self.redacted(job)
        self.store.record_job(chunk_id, job)
        log.info("%s: submitted %s batch job %s (chunk %s)", self.label, self.provider.name, job.id, chunk_id)

    def redacted(self, job: JobInfo) -> JobInfo:
        """``job`` with the API key taken out of the provider's error messages."""
        return dataclasses.replace(job, errors=[self.provider.redact(error) for error in job.errors])

    # --- reporting -----------------------------------------------------------------------

    def log_progress(self) -> None:
        chunks = self.store.chunks(self.step)
        live = [c for c in chunks if c.state in LIVE_STATES]
        done = sum(c.completed for c in chunks)
        total = sum(c.n_requests for c in chunks if c.state not in ("abandoned",))
        log.info(
            "%s: %d offline job(s) running, %d/%d requests done, %.0fs elapsed",
            self.label,
            len(live),
            done,
            total,
            time.monotonic() - self.started,
        )

    def not_finished(
        self, live: list[ChunkRecord], *, interrupted: bool = False
    ) -> OfflineBatchGenerationNotFinished:
        jobs = [chunk.as_job_dict() for chunk in live]
        total = sum(j["total"] for j in jobs)
        done = sum(j["completed"] for j in jobs)
        how = (
            "polling was interrupted"
            if interrupted
            else (f"{self.submitted_now} job(s) submitted" if self.submitted_now else "jobs still running")
        )
        message = (
            f"{self.label}: {len(jobs)} offline batch job(s) not finished ({how}; {done}/{total} requests "
            "done). Everything committed so far is kept and every job id is recorded: rerun the same "
            "command to poll the jobs and collect their results (no request is submitted twice), pass "
            f"{advice('block_until_done')} to wait for them, or list them with `datamill jobs CACHE_DIR`."
        )
        error = OfflineBatchGenerationNotFinished(message, jobs=jobs)
        error.step = self.step  # type: ignore[attr-defined]
        error.interrupted = interrupted  # type: ignore[attr-defined]
        return error


class _ChunkBuilder:
    """Lines of the next chunk, within the provider's request and byte limits."""

    def __init__(self, provider: BatchProvider) -> None:
        self.provider = provider
        self.keys: list[str] = []
        self.lines: list[bytes] = []
        self.size = 0

    def fits(self, line: bytes) -> bool:
        if not self.keys:
            return True
        if len(self.keys) >= self.provider.max_requests_per_job:
            return False
        overhead = self.provider.payload_overhead(len(self.keys) + 1)
        return self.size + len(line) + overhead <= self.provider.max_bytes_per_job

    def add(self, key: str, line: bytes) -> None:
        self.keys.append(key)
        self.lines.append(line)
        self.size += len(line)

    def take(self) -> tuple[list[str], list[bytes]]:
        keys, lines = self.keys, self.lines
        self.keys, self.lines, self.size = [], [], 0
        return keys, lines


def _model_of(lines: list[bytes]) -> str:
    """The model named by a chunk's first line (for the job table); '' if not found."""
    head = lines[0] if lines else b""
    marker = b'"model":"'
    start = head.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    end = head.find(b'"', start)
    return head[start:end].decode(errors="replace")


@contextlib.contextmanager
def _sigint_sets(event: asyncio.Event) -> Iterator[None]:
    """While polling, SIGINT sets ``event`` instead of raising (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, event.set)
    except (NotImplementedError, RuntimeError, ValueError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)
