"""``AnthropicLLMServing``: Anthropic's Messages API over aiohttp, behind the same interface.

aiohttp rather than the official SDK for the same reason as the OpenAI backend: the per-request
client cost (``benchmarks/client_overhead.py``, docs/benchmarks.md). Requests are built from the
same chat messages: system messages go to the top-level ``system`` parameter; ``max_tokens``
is required by the API and defaults to 1024.

The Messages API has no ``n`` (``supports_n = False``): ``build_requests(messages, n=k)``
gives ``k`` requests salted ``sample-i``, each its own cache entry. A request built directly
with ``n > 1`` is answered by ``n`` calls inside one ``send_once``; samples already received
are kept across retries of that request, so a retry pays only for the missing ones. Every
salt (a sample, or a retry of a reply that failed validation) is sent as
``metadata.user_id``, so the provider sees a distinct request.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

import orjson

from datamill.errors import ConfigError, InvalidResponseError
from datamill.serving.http_serving import HTTPLLMServing
from datamill.serving.structured import schema_instruction
from datamill.serving.types import GenericRequest, GenericResponse

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_NOT_SENT = frozenset({"n", "response_format", "seed"})


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


class AnthropicLLMServing(HTTPLLMServing):
    """Claude models through ``POST /v1/messages``.

    The key comes from ``api_key`` or ``ANTHROPIC_API_KEY`` and is sent as ``x-api-key`` only.
    ``response_format`` (a JSON schema asked by a structured generator) becomes an instruction
    appended to the system prompt, since the Messages API has no such parameter; replies are
    validated by the operator either way. The other keyword arguments (``api_key``, ``timeout``,
    ``max_retries``, ``retry``, ``rpm``, ``tpm``, ``price_per_million``, extra generation
    parameters) are ``HTTPLLMServing``'s.

    ``use_offline_batch_generation=True`` runs the serving's steps through the Message Batches
    API (``datamill.serving.offline``; one batch line per request, ``n`` is not expanded there:
    ``build_requests(..., n=k)`` already makes k salted requests for this backend);
    ``offline_batch_generation_block_until_done=SECONDS`` polls every SECONDS until done.
    """

    provider = "anthropic"
    supports_n = False

    def __init__(
        self,
        api_url: str = "https://api.anthropic.com/v1/messages",
        model_name: str = "claude-haiku-4-5",
        max_workers: int = 16,
        *,
        key_name_of_api_key: str = "ANTHROPIC_API_KEY",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            messages_url(api_url),
            model_name,
            max_workers,
            key_name_of_api_key=key_name_of_api_key,
            temperature=temperature,
            max_tokens=max_tokens,
            **kwargs,
        )
        self._partial: dict[str, dict[int, GenericResponse]] = {}

    def provider_headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    async def close(self) -> None:
        self._partial.clear()
        await super().close()

    def batch_provider(self) -> Any:
        """Anthropic's Message Batches API at this endpoint's host (``/v1/messages/batches``)."""
        from datamill.serving.offline.anthropic_batch import AnthropicBatchProvider

        base = (
            self.api_url[: -len("/v1/messages")]
            if self.api_url.endswith("/v1/messages")
            else self.api_url[: -len("/messages")]
        )
        return AnthropicBatchProvider(
            base, self.resolve_key(), self.request_body, timeout=max(self.timeout, 600.0)
        )

    def request_body(self, request: GenericRequest, sample: int | None = None) -> dict[str, Any]:
        """The Messages API body; ``sample`` marks the k-th of ``n`` samples."""
        system: list[str] = []
        messages: list[dict[str, Any]] = []
        for message in request.messages:
            if message.get("role") == "system":
                system.append(str(message.get("content") or ""))
            else:
                messages.append(message)
        params = request.params
        response_format = params.get("response_format")
        if isinstance(response_format, dict):
            system.append(schema_instruction(response_format))
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        body.update((k, v) for k, v in params.items() if k not in _NOT_SENT)
        body.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
        if system:
            body["system"] = "\n\n".join(system)
        marks = [m for m in (request.salt, None if sample is None else f"sample-{sample}") if m]
        if marks and "metadata" not in body:
            body["metadata"] = {"user_id": "datamill-" + "-".join(marks)}
        return body

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
        return parse_message(await self.post(self.request_body(request, sample), request_key))


def parse_message(body: bytes) -> GenericResponse:
    """Translate a Messages API reply; anything malformed is a retryable ``InvalidResponseError``."""
    try:
        data = orjson.loads(body)
        blocks = data["content"]
        text = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
        usage = data.get("usage") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidResponseError(f"malformed message: {body[:200]!r}") from None
    return GenericResponse(
        texts=[text],
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
        model=str(data.get("model", "")),
    )
