"""What a provider's Batch API offers the offline path, in provider-neutral terms.

A ``BatchProvider`` turns requests into the provider's batch lines, submits a chunk of them as
one job, reads a job's status, finds a job it created by the chunk id (to adopt a job whose id
was never recorded) and parses a finished job's results into ``LineResult`` values. Everything
about order, resubmission and bookkeeping lives in ``datamill.serving.offline.engine``.

Each provider module (``datamill.serving.openai_compat``, ``datamill.serving.anthropic``) holds
its ``BatchProvider`` beside its online serving. HTTP goes through the same edge as the online
path (``datamill.serving.http.send``: one exception map) rather than the official SDKs: the
offline path makes a handful of calls per job, needs multipart uploads of up to 200 MB, and must
behave the same for both providers; the SDKs would add two runtime dependencies and their own
retry layers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from datamill.errors import ServingError
from datamill.serving.http import HTTPStatusError, decode_json, open_session, redact, send
from datamill.serving.retry import RetryPolicy
from datamill.serving.types import GenericRequest, GenericResponse

log = logging.getLogger(__name__)

#: Normalised job statuses. ``ENDED_STATUSES`` have results (or, ``failed``, errors) to read.
ENDED_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

BodyFn = Callable[[GenericRequest], dict[str, Any]]


@dataclass
class JobInfo:
    """A provider job as the offline path sees it."""

    id: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    output_ref: str | None = None
    error_ref: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES


@dataclass(slots=True)
class LineResult:
    """One result line: the answer, or the provider's error for that request.

    ``cached`` is the answer as the request cache stores it: the JSON text of
    ``GenericResponse(..., offline=True).to_cache()`` (``cache_entry`` builds it), so ingestion
    writes it without building and re-encoding objects per line.
    """

    key: str
    cached: str | None = None
    error: str | None = None

    @property
    def response(self) -> GenericResponse | None:
        return None if self.cached is None else GenericResponse.from_cache(json.loads(self.cached))


_encode_text = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def cache_entry(texts: list[str], prompt_tokens: int, completion_tokens: int, model: str) -> str:
    """The request-cache JSON of an offline answer; equal to ``json.dumps(GenericResponse(texts,
    prompt_tokens, completion_tokens, model, offline=True).to_cache(), ensure_ascii=False)``."""
    return (
        f'{{"texts": {_encode_text(texts)}, "prompt_tokens": {int(prompt_tokens)}, '
        f'"completion_tokens": {int(completion_tokens)}, "model": {_encode_text(model)}, "offline": true}}'
    )


#: A Batch API call answered an HTTP error; ``status`` says which (the offline engine tells a
#: refused create from one that may have landed by it).
BatchProviderError = HTTPStatusError
#: The retry policy of Batch API calls: the online one, with fewer attempts and shorter waits.
RETRY = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0)


class BatchProvider(ABC):
    """One provider's Batch API. Limits are class attributes; subclasses may lower them."""

    name: str = "generic"
    #: Most requests one job may hold.
    max_requests_per_job: int = 50_000
    #: Most bytes of request lines one job may hold.
    max_bytes_per_job: int = 200 * 1024 * 1024
    #: Whether a chunk is first uploaded as a file (OpenAI) or sent inline (Anthropic).
    needs_upload: bool = True
    #: The jobs collection: listed newest first, ``{jobs_path}/{id}`` and ``.../{id}/cancel``.
    jobs_path: str = "/batches"
    #: The query parameter that continues a listing after a job id.
    list_cursor_param: str = "after"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        body_fn: BodyFn,
        *,
        timeout: float = 600.0,
        max_requests_per_job: int | None = None,
        max_bytes_per_job: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.body_fn = body_fn
        self.timeout = timeout
        if max_requests_per_job is not None:
            self.max_requests_per_job = max_requests_per_job
        if max_bytes_per_job is not None:
            self.max_bytes_per_job = max_bytes_per_job
        self._session: aiohttp.ClientSession | None = None

    # --- lines ---------------------------------------------------------------------------

    @abstractmethod
    def encode_line(self, request: GenericRequest) -> bytes:
        """The request as one batch line (JSON, no trailing newline); its key is the custom_id."""

    def chunk_payload(self, lines: list[bytes]) -> bytes:
        """The bytes sent for a chunk: a JSONL file by default."""
        return b"\n".join(lines) + b"\n"

    def payload_overhead(self, n_lines: int) -> int:
        """Bytes the payload adds around its lines (separators, envelope)."""
        return n_lines

    # --- API -----------------------------------------------------------------------------

    async def upload(self, chunk_id: str, payload: bytes) -> str:
        """Upload a chunk's file; returns the file id (providers with ``needs_upload``)."""
        raise NotImplementedError

    async def find_upload(self, chunk_id: str) -> str | None:
        """The id of a file uploaded for ``chunk_id`` whose id was never recorded, if any."""
        return None

    async def file_exists(self, file_id: str) -> bool:
        return False

    @abstractmethod
    async def create_job(
        self, chunk_id: str, *, file_id: str | None = None, payload: bytes | None = None
    ) -> JobInfo:
        """Create the job for a chunk, tagging it with ``chunk_id`` where the API allows."""

    @abstractmethod
    async def find_job(
        self, chunk_id: str, *, created_after: float, n_requests: int, known_ids: set[str]
    ) -> JobInfo | None:
        """A job created for ``chunk_id`` whose id was never recorded (a crash), if any."""

    @abstractmethod
    def parse_job(self, data: dict[str, Any]) -> JobInfo:
        """A job as the API returns or lists it, in provider-neutral terms."""

    async def get_job(self, job_id: str) -> JobInfo:
        return self.parse_job(await self.request("GET", f"{self.jobs_path}/{job_id}"))

    async def cancel_job(self, job_id: str) -> JobInfo:
        return self.parse_job(await self.request("POST", f"{self.jobs_path}/{job_id}/cancel"))

    async def find_listed_job(self, matches: Callable[[JobInfo], bool], *, oldest: float) -> JobInfo | None:
        """The newest listed job that ``matches``; the listing is read page by page, newest
        first, and no further than the first page that reaches a job created before ``oldest``."""
        after: str | None = None
        while True:
            params = {"limit": "100"}
            if after:
                params[self.list_cursor_param] = after
            page = await self.request("GET", self.jobs_path, params=params)
            jobs = [self.parse_job(item) for item in page.get("data", [])]
            for job in jobs:
                if matches(job):
                    return job
            if not page.get("has_more") or not jobs or jobs[-1].created_at < oldest:
                return None
            after = jobs[-1].id

    @abstractmethod
    async def results(self, job: JobInfo) -> list[LineResult]:
        """Every result line of an ended job (output and error files together), in any order."""

    # --- HTTP ----------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """The key and version headers of every call (the provider module's, shared with its
        online serving)."""
        return {}

    def redact(self, text: str) -> str:
        """``text`` without this provider's API key: every error or job message passes here
        before it is logged, raised or stored (the online path's ``http.redact``)."""
        return redact(text, self.api_key)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = open_session(self.auth_headers(), 8, self.timeout, json_body=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        attempts: int = RETRY.max_attempts,
        raw: bool = False,
        data: Any = None,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One API call through the shared HTTP edge (``datamill.serving.http.send``), retried
        on what the edge calls retryable with ``RETRY``'s backoff; JSON (or bytes) back.

        ``attempts=1`` for calls that must not be repeated blindly (an upload, a create: a
        retry could make a second job; the offline engine settles those on the next run).
        """
        url = path if path.startswith("http") else self.base_url + path
        session = await self.session()
        for attempt in range(1, attempts + 1):
            try:
                body = await send(
                    session,
                    method,
                    url,
                    timeout=self.timeout,
                    secret=self.api_key,
                    data=data,
                    json=json,
                    params=params,
                    headers=headers,
                )
                return body if raw else decode_json(body, url)
            except ServingError as exc:
                if not exc.retryable or attempt == attempts:
                    raise
                await asyncio.sleep(RETRY.delay(attempt, getattr(exc, "retry_after", None)))
        raise AssertionError("unreachable")


def iter_result_lines(content: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(custom_id, line)`` for each JSON line of a results file; unreadable lines are skipped.

    orjson parses these lines about 3.5× faster than the stdlib, which is most of the cost of
    ingesting a million answers.
    """
    loads = orjson.loads
    for raw in content.splitlines():
        if not raw:
            continue
        try:
            line = loads(raw)
            key = line["custom_id"]
        except (ValueError, KeyError, TypeError):
            continue
        yield key, line
