"""``HTTPLLMServing``: what the API backends share: their options, the key, one session.

A backend over a provider's HTTP API (``APILLMServing_request``, ``AnthropicLLMServing``)
subclasses it, declares its own defaults (URL, model, the key's environment variable) and adds
only what is its own: the request body, the reply parser, the provider's headers
(``provider_headers``) and its Batch API (``batch_provider``). Subclasses repeat the option list
in their own signature, so ``help()`` shows every option of the class a user builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from datamill.serving.base import LLMServingABC
from datamill.serving.http import open_session, post_json, resolve_api_key
from datamill.serving.limit_headers import LIMIT_HEADER_NAMES, parse_limit_headers
from datamill.serving.retry import RetryPolicy


class HTTPLLMServing(LLMServingABC):
    """An LLM backend that talks to ``api_url`` over one pooled aiohttp session.

    Options (each a named parameter; a misspelt one is a ``ConfigError``):

    - ``api_key`` or the environment variable ``key_name_of_api_key``: sent in headers only
      (``provider_headers``), never stored in the cache, the state database or logs. Loopback
      endpoints (the simulator, a local server) may run without a key.
    - ``timeout``: seconds for one attempt; ``max_retries`` bounds the attempts of the default
      ``RetryPolicy`` (``retry`` replaces it); ``rpm`` / ``tpm`` pace the serving;
      ``price_per_million={"input": .., "output": ..}`` overrides the price table.
    - ``use_offline_batch_generation=True`` runs the serving's steps through the provider's
      Batch API (``datamill.serving.offline``); ``offline_batch_generation_block_until_done=
      SECONDS`` polls every SECONDS until done instead of stopping after submitting.
    - Generation parameters: ``temperature``, ``max_tokens``, ``top_p``, ``seed``, ``stop``, and
      any other the provider accepts in ``params={...}``. They are sent with every request and
      are part of its key and of the step fingerprint; None leaves one unset.
    """

    def __init__(
        self,
        api_url: str,
        model_name: str,
        max_workers: int = 16,
        *,
        api_key: str | None = None,
        key_name_of_api_key: str,
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
        named = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "top_p": top_p,
            "seed": seed,
            "stop": stop,
        }
        super().__init__(
            model_name,
            max_workers=max_workers,
            retry=retry or RetryPolicy(max_attempts=max_retries),
            params={**(params or {}), **{k: v for k, v in named.items() if v is not None}},
            rpm=rpm,
            tpm=tpm,
            price_per_million=price_per_million,
        )
        self.api_url = api_url
        self.timeout = timeout
        self._key_env = key_name_of_api_key
        self._api_key = api_key
        self._key: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self.use_offline_batch_generation = bool(use_offline_batch_generation)
        self.offline_batch_generation_block_until_done = offline_batch_generation_block_until_done

    def provider_headers(self, key: str | None) -> dict[str, str]:
        """The headers every request carries besides ``Content-Type``: the key, API version."""
        return {}

    def resolve_key(self) -> str | None:
        """The API key (``ConfigError`` when a non-loopback endpoint has none)."""
        return resolve_api_key(self._api_key, self._key_env, self.api_url)

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:
            return
        self._key = self.resolve_key()
        self._session = open_session(self.provider_headers(self._key), self.max_workers, self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().close()

    async def post(self, body: dict[str, Any], request_key: str) -> bytes:
        """POST ``body`` to ``api_url`` (the session started on first use); the 2xx reply's bytes.

        ``request_key`` travels as ``X-Datamill-Request-Key``; failures are ``ServingError``
        values with the key redacted (``datamill.serving.http.send``).
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        return await post_json(
            self._session,
            self.api_url,
            body,
            headers={"X-Datamill-Request-Key": request_key},
            timeout=self.timeout,
            secret=self._key,
            on_reply=self._observe_limits,
        )

    def _observe_limits(self, headers: Mapping[str, str]) -> None:
        """Adopt the limits the reply states. Replies repeat the same limits, so the headers are
        parsed only when their stated limits differ from the last reply's (a few dict lookups
        per reply instead of ~14 µs of parsing)."""
        limiter = self.limiter
        stated = tuple(headers.get(name) for name in LIMIT_HEADER_NAMES)
        if stated == limiter.stated_headers:
            return
        limiter.stated_headers = stated
        limits = parse_limit_headers(headers)
        if limits is not None:
            limiter.observe(limits)
