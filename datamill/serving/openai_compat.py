"""``APILLMServing_request``: any OpenAI-compatible ``/chat/completions`` endpoint over aiohttp.

aiohttp is used directly because the per-request hot path must cost no more than a bare
aiohttp loop (about 150 µs of CPU per request on our 2-core machines); the official SDK's
default httpx client costs far more at high concurrency.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlparse

import aiohttp

from datamill.errors import ConfigError, InvalidResponseError, ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.retry import RetryPolicy
from datamill.serving.types import GenericRequest, GenericResponse

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class HTTPStatusError(ServingError):
    """A non-2xx answer; carries ``retry_after`` when the provider sent one."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, retryable=status == 429 or status >= 500)
        self.retry_after = retry_after


def chat_completions_url(api_url: str) -> str:
    """Accept a full ``.../chat/completions`` URL or an API base such as ``.../v1``."""
    url = api_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + "/chat/completions"


def parse_retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def provider_error_message(body: str) -> str:
    """The provider's own error message when the body carries one, else the raw body (trimmed)."""
    try:
        data = json.loads(body)
        error = data.get("error", data)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    except (ValueError, AttributeError):
        pass
    return body[:500]


class APILLMServing_request(LLMServingABC):  # noqa: N801 - name kept for pipelines ported from DataFlow
    """OpenAI-compatible chat completions.

    The API key comes from ``api_key`` or the environment variable ``key_name_of_api_key``
    (``OPENAI_API_KEY`` by default); it is sent in the ``Authorization`` header only and never
    stored in the cache, the state database or logs. Loopback endpoints (the simulator, a local
    vLLM server) may run without a key.
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
        **params: Any,
    ) -> None:
        super().__init__(
            model_name,
            max_workers=max_workers,
            retry=retry or RetryPolicy(max_attempts=max_retries),
            params={"temperature": temperature, "max_tokens": max_tokens, **params},
        )
        self.api_url = chat_completions_url(api_url)
        self.timeout = timeout
        self._key_env = key_name_of_api_key
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None

    def _resolve_api_key(self) -> str | None:
        key = self._api_key or os.environ.get(self._key_env)
        if not key and urlparse(self.api_url).hostname not in _LOOPBACK_HOSTS:
            raise ConfigError(
                f"no API key for {self.api_url}: set the {self._key_env} environment variable "
                "or pass api_key= to the serving"
            )
        return key

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:
            return
        headers = {"Content-Type": "application/json"}
        key = self._resolve_api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=self.max_workers, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().close()

    def request_body(self, request: GenericRequest) -> dict[str, Any]:
        return {"model": request.model, "messages": request.messages, **request.params}

    async def send_once(self, request: GenericRequest) -> GenericResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.post(
                self.api_url,
                json=self.request_body(request),
                headers={"X-Datamill-Request-Key": request.key},
            ) as reply:
                body = await reply.read()
                if reply.status >= 400:
                    text = body.decode(errors="replace")
                    raise HTTPStatusError(
                        f"{self.api_url} answered HTTP {reply.status}: {provider_error_message(text)}",
                        status=reply.status,
                        retry_after=parse_retry_after(reply.headers),
                    )
        except aiohttp.ClientError as exc:
            raise ServingError(f"connection to {self.api_url} failed: {exc!r}", retryable=True) from None
        except TimeoutError:
            raise ServingError(
                f"{self.api_url} did not answer within {self.timeout}s", retryable=True
            ) from None
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
