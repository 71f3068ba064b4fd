"""``APILLMServing_request``: any OpenAI-compatible ``/chat/completions`` endpoint over aiohttp.

aiohttp is used directly because the per-request hot path must cost no more than a bare
aiohttp loop (about 150 µs of CPU per request on our 2-core machines); the official SDK's
default httpx client costs far more at high concurrency.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from datamill.errors import InvalidResponseError
from datamill.serving.base import LLMServingABC
from datamill.serving.http import (
    HTTPStatusError,
    open_session,
    parse_retry_after,
    post_json,
    provider_error_message,
    resolve_api_key,
    salt_seed,
)
from datamill.serving.retry import RetryPolicy
from datamill.serving.types import GenericRequest, GenericResponse

__all__ = [
    "APILLMServing_request",
    "HTTPStatusError",
    "chat_completions_url",
    "parse_chat_completion",
    "parse_retry_after",
    "provider_error_message",
]


def chat_completions_url(api_url: str) -> str:
    """Accept a full ``.../chat/completions`` URL or an API base such as ``.../v1``."""
    url = api_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + "/chat/completions"


class APILLMServing_request(LLMServingABC):  # noqa: N801 - name kept for pipelines ported from DataFlow
    """OpenAI-compatible chat completions.

    The API key comes from ``api_key`` or the environment variable ``key_name_of_api_key``
    (``OPENAI_API_KEY`` by default); it is sent in the ``Authorization`` header only and never
    stored in the cache, the state database or logs. Loopback endpoints (the simulator, a local
    vLLM server) may run without a key.

    ``rpm`` / ``tpm`` pace the serving (see ``datamill.serving.ratelimit``);
    ``price_per_million={"input": .., "output": ..}`` overrides the price table. A salted
    request (a retry of a reply that failed validation) is sent with a ``seed`` derived from
    its salt, unless ``seed`` is set, so the provider samples a different reply.

    ``use_offline_batch_generation=True`` runs the serving's steps through OpenAI's Batch API
    at the same base URL (``datamill.serving.offline``): the first run submits and raises
    ``OfflineBatchGenerationNotFinished``, a rerun collects; with
    ``offline_batch_generation_block_until_done=SECONDS`` the run polls every SECONDS instead.
    """

    provider = "openai"

    def __init__(
        self,
        api_url: str = "https://api.openai.com/v1/chat/completions",
        model_name: str = "gpt-4o-mini",
        max_workers: int = 16,
        *,
        api_key: str | None = None,
        key_name_of_api_key: str = "OPENAI_API_KEY",
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        retry: RetryPolicy | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        price_per_million: dict[str, float] | None = None,
        use_offline_batch_generation: bool = False,
        offline_batch_generation_block_until_done: float | None = None,
        **params: Any,
    ) -> None:
        super().__init__(
            model_name,
            max_workers=max_workers,
            retry=retry or RetryPolicy(max_attempts=max_retries),
            params={"temperature": temperature, "max_tokens": max_tokens, **params},
            rpm=rpm,
            tpm=tpm,
            price_per_million=price_per_million,
        )
        self.api_url = chat_completions_url(api_url)
        self.timeout = timeout
        self._key_env = key_name_of_api_key
        self._api_key = api_key
        self._key: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self.use_offline_batch_generation = bool(use_offline_batch_generation)
        self.offline_batch_generation_block_until_done = offline_batch_generation_block_until_done

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:
            return
        headers = {"Content-Type": "application/json"}
        self._key = resolve_api_key(self._api_key, self._key_env, self.api_url)
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._session = open_session(headers, self.max_workers, self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().close()

    def batch_provider(self) -> Any:
        """OpenAI's Batch API at this endpoint's base URL (``/files``, ``/batches``)."""
        from datamill.serving.offline.openai_batch import OpenAIBatchProvider

        base = self.api_url[: -len("/chat/completions")]
        key = resolve_api_key(self._api_key, self._key_env, self.api_url)
        return OpenAIBatchProvider(base, key, self.request_body, timeout=max(self.timeout, 600.0))

    def request_body(self, request: GenericRequest) -> dict[str, Any]:
        body = {"model": request.model, "messages": request.messages, **request.params}
        if request.salt and "seed" not in body:
            body["seed"] = salt_seed(request.salt)
        return body

    async def send_once(self, request: GenericRequest) -> GenericResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        body = await post_json(
            self._session,
            self.api_url,
            self.request_body(request),
            headers={"X-Datamill-Request-Key": request.key},
            timeout=self.timeout,
            secret=self._key,
        )
        return parse_chat_completion(body)


def parse_chat_completion(body: bytes) -> GenericResponse:
    """Translate an OpenAI chat-completion body; anything malformed is a retryable error."""
    try:
        data = json.loads(body)
        choices = data["choices"]
        texts = [choice["message"]["content"] or "" for choice in choices]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidResponseError(f"malformed chat completion: {body[:200]!r}") from None
    if not texts:
        raise InvalidResponseError("chat completion with no choices")
    return GenericResponse(
        texts=texts,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=str(data.get("model", "")),
    )
