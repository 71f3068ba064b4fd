"""OpenAI-compatible chat completions, online and through the Batch API, in one module.

``APILLMServing_request`` sends each request to ``/chat/completions``; ``OpenAIBatchProvider``
runs a step's requests as ``/files`` + ``/batches`` jobs at the same base URL. Both build the
body with ``request_body``, send the key with ``auth_headers`` and read replies with
``read_chat_completion``, so a batch answer equals the online answer to the same request.

aiohttp is used directly because the per-request hot path must cost no more than a bare
aiohttp loop (about 150 µs of CPU per request on our 2-core machines); the official SDK's
default httpx client costs far more at high concurrency.

Batch API: each chunk is one file named ``datamill-{chunk_id}.jsonl`` (so an upload whose id was
never recorded can be found again) and one batch tagged ``metadata={"datamill_chunk": chunk_id}``
(so a batch whose id was never recorded can be adopted). Results come back as an output file and
an error file whose lines are in no particular order; they are joined on ``custom_id``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

import aiohttp
import orjson

from datamill.errors import ConfigError, InvalidResponseError
from datamill.serving.http import salt_seed
from datamill.serving.http_serving import HTTPLLMServing
from datamill.serving.offline.provider import (
    BatchProvider,
    BatchProviderError,
    JobInfo,
    LineResult,
    cache_entry,
    iter_result_lines,
)
from datamill.serving.retry import RetryPolicy
from datamill.serving.types import GenericRequest, GenericResponse

NAME = "openai"
KEY_ENV = "OPENAI_API_KEY"
CHAT_ENDPOINT = "/v1/chat/completions"


def auth_headers(key: str | None) -> dict[str, str]:
    """The key as a bearer token (none for a keyless loopback endpoint)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def chat_completions_url(api_url: str) -> str:
    """Accept a full ``.../chat/completions`` URL or an API base such as ``.../v1``.

    A URL that names some other endpoint (``.../chat/completion``, ``.../completions``,
    ``.../chat``) is refused rather than extended into a path the user never wrote.
    """
    url = api_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    last = urlparse(url).path.rsplit("/", 1)[-1].lower()
    if last.startswith(("chat", "completion", "response", "embedding", "message")):
        raise ConfigError(
            f"api_url {api_url!r} names an endpoint other than chat completions: pass the full "
            "endpoint (e.g. https://api.openai.com/v1/chat/completions) or the API base (e.g. "
            "https://api.openai.com/v1)"
        )
    return url + "/chat/completions"


def request_body(request: GenericRequest) -> dict[str, Any]:
    """The chat-completions body. A salted request (a retry of a reply that failed validation,
    or one of n samples) gets a ``seed`` derived from its salt unless ``seed`` is set, so the
    provider samples a different reply."""
    body = {"model": request.model, "messages": request.messages, **request.params}
    if request.salt and "seed" not in body:
        body["seed"] = salt_seed(request.salt)
    return body


def read_chat_completion(data: Any) -> tuple[list[str], int, int, str]:
    """``(texts, prompt_tokens, completion_tokens, model)`` of a chat completion (online reply
    or batch output body); ``InvalidResponseError`` when it is malformed or has no choices.

    With ``response_format`` the content is the JSON text itself; a refusal has no content and
    reads as an empty text, which the operator's validation rejects like any invalid reply.
    """
    try:
        texts = [choice["message"]["content"] or "" for choice in data["choices"]]
        usage = data.get("usage") or {}
        counts = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (KeyError, TypeError, AttributeError, ValueError):
        raise InvalidResponseError(f"malformed chat completion: {str(data)[:200]!r}") from None
    if not texts:
        raise InvalidResponseError("chat completion with no choices")
    return texts, counts[0], counts[1], str(data.get("model", ""))


def parse_chat_completion(body: bytes) -> GenericResponse:
    """Translate an online chat-completion reply; anything malformed is retryable."""
    try:
        data = orjson.loads(body)
    except ValueError:
        raise InvalidResponseError(f"malformed chat completion: {body[:200]!r}") from None
    texts, prompt_tokens, completion_tokens, model = read_chat_completion(data)
    return GenericResponse(texts, prompt_tokens, completion_tokens, model)


class APILLMServing_request(HTTPLLMServing):  # noqa: N801 - name kept for pipelines ported from DataFlow
    """OpenAI-compatible chat completions (OpenAI, vLLM/SGLang servers, gateways).

    The key comes from ``api_key`` or the environment variable ``key_name_of_api_key``
    (``OPENAI_API_KEY`` by default) and is sent in the ``Authorization`` header only. The options
    are ``HTTPLLMServing``'s (see there); ``response_format`` from a structured operator is sent
    as is (``json_schema`` or ``json_object``).

    ``use_offline_batch_generation=True`` runs the serving's steps through OpenAI's Batch API
    at the same base URL: the first run submits and raises ``OfflineBatchGenerationNotFinished``,
    a rerun collects; with ``offline_batch_generation_block_until_done=SECONDS`` the run polls
    every SECONDS instead.
    """

    provider = NAME

    def __init__(
        self,
        api_url: str = "https://api.openai.com/v1/chat/completions",
        model_name: str = "gpt-4o-mini",
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
        max_tokens: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            chat_completions_url(api_url),
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
            stop=stop,
            params=params,
        )

    def provider_headers(self, key: str | None) -> dict[str, str]:
        return auth_headers(key)

    def batch_provider(self) -> OpenAIBatchProvider:
        """OpenAI's Batch API at this endpoint's base URL (``/files``, ``/batches``)."""
        base = self.api_url[: -len("/chat/completions")]
        return OpenAIBatchProvider(base, self.resolve_key(), request_body, timeout=max(self.timeout, 600.0))

    async def send_once(self, request: GenericRequest) -> GenericResponse:
        return parse_chat_completion(await self.post(request_body(request), request.key))


# --- Batch API -------------------------------------------------------------------------------

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_LINE_HEAD = b'{"custom_id":"'
_LINE_MID = ('","method":"POST","url":"' + CHAT_ENDPOINT + '","body":').encode()


def file_name(chunk_id: str) -> str:
    return f"datamill-{chunk_id}.jsonl"


class OpenAIBatchProvider(BatchProvider):
    """OpenAI Batch API limits: 50,000 requests and 200 MB per input file."""

    name = NAME
    max_requests_per_job = 50_000
    max_bytes_per_job = 200 * 1024 * 1024
    needs_upload = True
    #: Jobs listed before the chunk's intent time, less this slack for clock skew, are not read.
    clock_slack = 3600.0

    def auth_headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)

    def encode_line(self, request: GenericRequest) -> bytes:
        return _LINE_HEAD + request.key.encode() + _LINE_MID + _encode(self.body_fn(request)).encode() + b"}"

    async def upload(self, chunk_id: str, payload: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", payload, filename=file_name(chunk_id), content_type="application/jsonl")
        data = await self.request("POST", "/files", data=form, attempts=1)
        return str(data["id"])

    async def find_upload(self, chunk_id: str) -> str | None:
        data = await self.request("GET", "/files", params={"purpose": "batch"})
        wanted = file_name(chunk_id)
        for item in data.get("data", []):
            if item.get("filename") == wanted:
                return str(item["id"])
        return None

    async def file_exists(self, file_id: str) -> bool:
        try:
            await self.request("GET", f"/files/{file_id}")
        except BatchProviderError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def create_job(
        self, chunk_id: str, *, file_id: str | None = None, payload: bytes | None = None
    ) -> JobInfo:
        assert file_id is not None
        body = {
            "input_file_id": file_id,
            "endpoint": CHAT_ENDPOINT,
            "completion_window": "24h",
            "metadata": {"datamill_chunk": chunk_id},
        }
        return self.parse_job(await self.request("POST", "/batches", json=body, attempts=1))

    async def find_job(
        self, chunk_id: str, *, created_after: float, n_requests: int, known_ids: set[str]
    ) -> JobInfo | None:
        def matches(job: JobInfo) -> bool:
            return job.metadata.get("datamill_chunk") == chunk_id

        return await self.find_listed_job(matches, oldest=created_after - self.clock_slack)

    def parse_job(self, data: dict[str, Any]) -> JobInfo:
        counts = data.get("request_counts") or {}
        errors = []
        for item in (data.get("errors") or {}).get("data") or []:
            where = f"line {item['line']}: " if item.get("line") else ""
            errors.append(f"{where}{item.get('code')}: {item.get('message')}")
        return JobInfo(
            id=str(data["id"]),
            status=str(data.get("status")),
            total=int(counts.get("total") or 0),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            errors=errors,
            output_ref=data.get("output_file_id"),
            error_ref=data.get("error_file_id"),
            metadata=dict(data.get("metadata") or {}),
            created_at=float(data.get("created_at") or 0),
        )

    async def results(self, job: JobInfo) -> list[LineResult]:
        out: list[LineResult] = []
        for ref in (job.output_ref, job.error_ref):
            if ref:
                content = await self.request("GET", f"/files/{ref}/content", raw=True)
                out.extend(parse_result_lines(content))
        return out


def parse_result_lines(content: bytes) -> list[LineResult]:
    """Parse an OpenAI batch output or error file (lines in any order)."""
    results: list[LineResult] = []
    for key, line in iter_result_lines(content):
        reply = line.get("response")
        if reply and reply.get("status_code") == 200 and not line.get("error"):
            try:
                texts, prompt_tokens, completion_tokens, model = read_chat_completion(reply.get("body") or {})
            except InvalidResponseError as exc:
                results.append(LineResult(key, error=f"{exc} in the batch output"))
                continue
            results.append(
                LineResult(key, cached=cache_entry(texts, prompt_tokens, completion_tokens, model))
            )
            continue
        error = line.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else None
        if not message and reply:
            body_error = (reply.get("body") or {}).get("error") or {}
            message = body_error.get("message") if isinstance(body_error, dict) else None
            message = f"HTTP {reply.get('status_code')}: {message or 'request failed'}"
        code = error.get("code") if isinstance(error, dict) else None
        results.append(LineResult(key, error=f"{code + ': ' if code else ''}{message or 'request failed'}"))
    return results


#: What ``datamill.serving.registry`` reads.
BATCH_PROVIDER = OpenAIBatchProvider
