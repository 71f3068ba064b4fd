"""Anthropic's Messages API, online and through Message Batches, in one module.

``AnthropicLLMServing`` sends each request to ``/v1/messages``; ``AnthropicBatchProvider`` runs
a step's requests as Message Batches at the same host. Both build the body with
``request_body``, send ``auth_headers`` and read replies with ``read_message``, so a batch
answer equals the online answer to the same request.

aiohttp rather than the official SDK for the same reason as the OpenAI backend: the per-request
client cost (``benchmarks/client_overhead.py``, docs/benchmarks.md). Requests are built from the
same chat messages: system messages go to the top-level ``system`` parameter; ``max_tokens``
is required by the API and defaults to 1024.

Structured output is a forced tool call: ``response_format`` (a JSON schema asked by a
structured operator) becomes one tool whose ``input_schema`` is the schema, with ``tool_choice``
naming it, and the reply's ``tool_use`` input is the reply text (as JSON). The schema is in
``params``, so it is part of the request key. A reply without a ``tool_use`` block reads as its
text, which the operator's validation rejects as an invalid reply (retried, then a failed row).

The Messages API has no ``n`` (``supports_n = False``): ``build_requests(messages, n=k)``
gives ``k`` requests salted ``sample-i``, each its own cache entry. A request built directly
with ``n > 1`` is answered by ``n`` calls inside one ``send_once``; samples already received
are kept across retries of that request, so a retry pays only for the missing ones. Every
salt (a sample, or a retry of a reply that failed validation) is sent as
``metadata.user_id``, so the provider sees a distinct request.

Message Batches carry no metadata, so a batch created for a chunk whose id was never recorded
(a crash between the create call and the record) is recognised by what it must look like: it
was created after the chunk's intent was recorded, holds exactly the chunk's number of
requests, and is not recorded for any other chunk. The cache lock makes chunk creation
sequential, so at most one such batch can exist per crash.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import orjson

from datamill.errors import ConfigError, InvalidResponseError
from datamill.serving.http_serving import HTTPLLMServing
from datamill.serving.offline.provider import (
    BatchProvider,
    JobInfo,
    LineResult,
    cache_entry,
    iter_result_lines,
)
from datamill.serving.retry import RetryPolicy
from datamill.serving.types import GenericRequest, GenericResponse

NAME = "anthropic"
KEY_ENV = "ANTHROPIC_API_KEY"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_NOT_SENT = frozenset({"n", "response_format", "seed"})
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def auth_headers(key: str | None) -> dict[str, str]:
    """The API version and the key (none for a keyless loopback endpoint)."""
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if key:
        headers["x-api-key"] = key
    return headers


def messages_url(api_url: str) -> str:
    """Accept a full ``.../v1/messages`` URL, an API base ``.../v1`` or a bare host; refuse a
    URL naming another endpoint (``.../v1/message``) rather than extend it."""
    url = api_url.rstrip("/")
    if url.endswith("/messages"):
        return url
    if urlparse(url).path.rsplit("/", 1)[-1].lower().startswith(("message", "complet", "chat")):
        raise ConfigError(
            f"api_url {api_url!r} names an endpoint other than messages: pass the full endpoint "
            "(e.g. https://api.anthropic.com/v1/messages) or the API base (https://api.anthropic.com)"
        )
    if url.endswith("/v1"):
        return url + "/messages"
    return url + "/v1/messages"


def schema_tool(response_format: dict[str, Any]) -> dict[str, Any]:
    """The tool a structured request forces: named after the schema, the schema its input."""
    spec = response_format.get("json_schema")
    spec = spec if isinstance(spec, dict) else {}
    schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else {"type": "object"}
    return {
        "name": str(spec.get("name") or "response"),
        "description": "Give your answer by calling this tool: its input is the answer.",
        "input_schema": schema,
    }


def request_body(request: GenericRequest, sample: int | None = None) -> dict[str, Any]:
    """The Messages API body; ``sample`` marks the k-th of ``n`` samples (online only)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.get("role") == "system":
            system.append(str(message.get("content") or ""))
        else:
            messages.append(message)
    params = request.params
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    body.update((k, v) for k, v in params.items() if k not in _NOT_SENT)
    body.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    response_format = params.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object"):
        tool = schema_tool(response_format)
        body["tools"] = [tool]
        body["tool_choice"] = {"type": "tool", "name": tool["name"]}
    if system:
        body["system"] = "\n\n".join(system)
    marks = [m for m in (request.salt, None if sample is None else f"sample-{sample}") if m]
    if marks and "metadata" not in body:
        body["metadata"] = {"user_id": "datamill-" + "-".join(marks)}
    return body


def read_message(data: Any) -> tuple[str, int, int, str]:
    """``(text, input_tokens, output_tokens, model)`` of a Messages API reply (online or in
    batch results); ``InvalidResponseError`` when it is malformed.

    The text is the first ``tool_use`` block's input as JSON when there is one (structured
    output), else the text blocks joined.
    """
    try:
        blocks = data["content"]
        tool_use = next((b for b in blocks if b.get("type") == "tool_use"), None)
        if tool_use is not None:
            text = _encode_json(tool_use["input"])
        else:
            text = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
        usage = data.get("usage") or {}
        return (
            text,
            int(usage.get("input_tokens") or 0),
            int(usage.get("output_tokens") or 0),
            str(data.get("model", "")),
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        raise InvalidResponseError(f"malformed message: {str(data)[:200]!r}") from None


def parse_message(body: bytes) -> GenericResponse:
    """Translate an online Messages API reply; anything malformed is retryable."""
    try:
        data = orjson.loads(body)
    except ValueError:
        raise InvalidResponseError(f"malformed message: {body[:200]!r}") from None
    text, input_tokens, output_tokens, model = read_message(data)
    return GenericResponse([text], input_tokens, output_tokens, model)


class AnthropicLLMServing(HTTPLLMServing):
    """Claude models through ``POST /v1/messages``.

    The key comes from ``api_key`` or ``ANTHROPIC_API_KEY`` and is sent as ``x-api-key`` only.
    The options are ``HTTPLLMServing``'s (see there); ``max_tokens`` defaults to 1024 because the
    API requires it, ``stop`` is sent as ``stop_sequences``, and ``seed`` stays in the request key
    but is not sent (the Messages API has none). ``response_format`` becomes a forced tool call
    (module docstring).

    ``use_offline_batch_generation=True`` runs the serving's steps through the Message Batches
    API (one batch line per request; ``build_requests(..., n=k)`` already makes k salted
    requests for this backend); ``offline_batch_generation_block_until_done=SECONDS`` polls
    every SECONDS until done.
    """

    provider = NAME
    supports_n = False

    def __init__(
        self,
        api_url: str = "https://api.anthropic.com/v1/messages",
        model_name: str = "claude-haiku-4-5",
        max_workers: int = 16,
        *,
        api_key: str | None = None,
        key_name_of_api_key: str = KEY_ENV,
        timeout: float = 120.0,
        max_retries: int = 6,
        retry: RetryPolicy | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        price_per_million: dict[str, float] | None = None,
        use_offline_batch_generation: bool = False,
        offline_batch_generation_block_until_done: float | None = None,
        temperature: float | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if stop is not None:
            params = {**(params or {}), "stop_sequences": [stop] if isinstance(stop, str) else list(stop)}
        super().__init__(
            messages_url(api_url),
            model_name,
            max_workers,
            api_key=api_key,
            key_name_of_api_key=key_name_of_api_key,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
            rpm=rpm,
            tpm=tpm,
            price_per_million=price_per_million,
            use_offline_batch_generation=use_offline_batch_generation,
            offline_batch_generation_block_until_done=offline_batch_generation_block_until_done,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            seed=seed,
            params=params,
        )
        self._partial: dict[str, dict[int, GenericResponse]] = {}

    def provider_headers(self, key: str | None) -> dict[str, str]:
        return auth_headers(key)

    async def close(self) -> None:
        self._partial.clear()
        await super().close()

    def batch_provider(self) -> AnthropicBatchProvider:
        """Anthropic's Message Batches API at this endpoint's host (``/v1/messages/batches``)."""
        base = self.api_url.removesuffix("/messages").removesuffix("/v1")
        return AnthropicBatchProvider(
            base, self.resolve_key(), request_body, timeout=max(self.timeout, 600.0)
        )

    async def send_once(self, request: GenericRequest) -> GenericResponse:
        n = int(request.params.get("n") or 1)
        if n <= 1:
            return await self._call(request, None)
        done = self._partial.setdefault(request.key, {})
        missing = [i for i in range(n) if i not in done]
        results = await asyncio.gather(*(self._call(request, i) for i in missing), return_exceptions=True)
        error: BaseException | None = None
        for index, result in zip(missing, results, strict=True):
            if isinstance(result, BaseException):
                error = error or result
            else:
                done[index] = result
        if error is not None:
            raise error
        del self._partial[request.key]
        samples = [done[i] for i in range(n)]
        return GenericResponse(
            texts=[s.text for s in samples],
            prompt_tokens=sum(s.prompt_tokens for s in samples),
            completion_tokens=sum(s.completion_tokens for s in samples),
            model=samples[0].model,
        )

    async def _call(self, request: GenericRequest, sample: int | None) -> GenericResponse:
        request_key = request.key if sample is None else f"{request.key}:{sample}"
        return parse_message(await self.post(request_body(request, sample), request_key))


# --- Message Batches -------------------------------------------------------------------------


def _timestamp(value: Any) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class AnthropicBatchProvider(BatchProvider):
    """Anthropic limits: 100,000 requests and 256 MB per batch."""

    name = NAME
    max_requests_per_job = 100_000
    max_bytes_per_job = 256 * 1024 * 1024
    needs_upload = False
    jobs_path = "/v1/messages/batches"
    list_cursor_param = "after_id"
    #: Listed batches created this long before the chunk's intent (clock skew) may still be it.
    clock_slack = 120.0

    def auth_headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)

    def encode_line(self, request: GenericRequest) -> bytes:
        body = _encode_json(self.body_fn(request)).encode()
        return b'{"custom_id":"' + request.key.encode() + b'","params":' + body + b"}"

    def chunk_payload(self, lines: list[bytes]) -> bytes:
        return b'{"requests":[' + b",".join(lines) + b"]}"

    def payload_overhead(self, n_lines: int) -> int:
        return n_lines + 16

    async def create_job(
        self, chunk_id: str, *, file_id: str | None = None, payload: bytes | None = None
    ) -> JobInfo:
        assert payload is not None
        headers = {"Content-Type": "application/json"}
        data = await self.request("POST", self.jobs_path, data=payload, headers=headers, attempts=1)
        return self.parse_job(data)

    async def find_job(
        self, chunk_id: str, *, created_after: float, n_requests: int, known_ids: set[str]
    ) -> JobInfo | None:
        oldest = created_after - self.clock_slack

        def matches(job: JobInfo) -> bool:
            return job.id not in known_ids and job.created_at >= oldest and job.total == n_requests

        return await self.find_listed_job(matches, oldest=oldest)

    def parse_job(self, data: dict[str, Any]) -> JobInfo:
        counts = data.get("request_counts") or {}
        succeeded = int(counts.get("succeeded") or 0)
        errored = int(counts.get("errored") or 0)
        canceled = int(counts.get("canceled") or 0)
        expired = int(counts.get("expired") or 0)
        processing = int(counts.get("processing") or 0)
        raw = data.get("processing_status")
        if raw == "ended":
            if data.get("cancel_initiated_at"):
                status = "cancelled"
            elif expired:
                status = "expired"
            else:
                status = "completed"
        elif raw == "canceling":
            status = "cancelling"
        else:
            status = "in_progress"
        return JobInfo(
            id=str(data["id"]),
            status=status,
            total=succeeded + errored + canceled + expired + processing,
            completed=succeeded,
            failed=errored + canceled + expired,
            output_ref=data.get("results_url") or f"{self.jobs_path}/{data['id']}/results",
            created_at=_timestamp(data.get("created_at")),
        )

    async def results(self, job: JobInfo) -> list[LineResult]:
        ref = job.output_ref or f"{self.jobs_path}/{job.id}/results"
        return parse_result_lines(await self.request("GET", ref, raw=True))


def parse_result_lines(content: bytes) -> list[LineResult]:
    """Parse a Message Batches results file (JSONL, lines in any order)."""
    results: list[LineResult] = []
    for key, line in iter_result_lines(content):
        result = line.get("result") or {}
        kind = result.get("type")
        if kind == "succeeded":
            try:
                text, input_tokens, output_tokens, model = read_message(result.get("message") or {})
            except InvalidResponseError as exc:
                results.append(LineResult(key, error=f"{exc} in the batch results"))
                continue
            results.append(LineResult(key, cached=cache_entry([text], input_tokens, output_tokens, model)))
        elif kind == "errored":
            error = result.get("error") or {}
            inner = error.get("error") if isinstance(error.get("error"), dict) else error
            results.append(LineResult(key, error=f"{inner.get('type', 'error')}: {inner.get('message', '')}"))
        else:
            results.append(LineResult(key, error=f"request {kind or 'failed'} in the batch"))
    return results


#: What ``datamill.serving.registry`` reads.
BATCH_PROVIDER = AnthropicBatchProvider
