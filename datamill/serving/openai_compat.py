"""``APILLMServing_request``: any OpenAI-compatible ``/chat/completions`` endpoint over aiohttp.

aiohttp is used directly because the per-request hot path must cost no more than a bare
aiohttp loop (about 150 µs of CPU per request on our 2-core machines); the official SDK's
default httpx client costs far more at high concurrency.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import orjson

from datamill.errors import ConfigError, InvalidResponseError
from datamill.serving.http import HTTPStatusError, parse_retry_after, provider_error_message, salt_seed
from datamill.serving.http_serving import HTTPLLMServing
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


class APILLMServing_request(HTTPLLMServing):  # noqa: N801 - name kept for pipelines ported from DataFlow
    """OpenAI-compatible chat completions.

    The API key comes from ``api_key`` or the environment variable ``key_name_of_api_key``
    (``OPENAI_API_KEY`` by default); it is sent in the ``Authorization`` header only and never
    stored in the cache, the state database or logs. Loopback endpoints (the simulator, a local
    vLLM server) may run without a key. The other keyword arguments (``timeout``,
    ``max_retries``, ``retry``, ``rpm``, ``tpm``, ``price_per_million``, extra generation
    parameters) are ``HTTPLLMServing``'s.

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
        key_name_of_api_key: str = "OPENAI_API_KEY",
        temperature: float | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            chat_completions_url(api_url),
            model_name,
            max_workers,
            key_name_of_api_key=key_name_of_api_key,
            temperature=temperature,
            max_tokens=max_tokens,
            **kwargs,
        )

    def provider_headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def batch_provider(self) -> Any:
        """OpenAI's Batch API at this endpoint's base URL (``/files``, ``/batches``)."""
        from datamill.serving.offline.openai_batch import OpenAIBatchProvider

        base = self.api_url[: -len("/chat/completions")]
        return OpenAIBatchProvider(
            base, self.resolve_key(), self.request_body, timeout=max(self.timeout, 600.0)
        )

    def request_body(self, request: GenericRequest) -> dict[str, Any]:
        body = {"model": request.model, "messages": request.messages, **request.params}
        if request.salt and "seed" not in body:
            body["seed"] = salt_seed(request.salt)
        return body

    async def send_once(self, request: GenericRequest) -> GenericResponse:
        return parse_chat_completion(await self.post(self.request_body(request), request.key))


def parse_chat_completion(body: bytes) -> GenericResponse:
    """Translate an OpenAI chat-completion body; anything malformed is a retryable error."""
    try:
        data = orjson.loads(body)
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
