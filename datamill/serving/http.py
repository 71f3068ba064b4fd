"""The HTTP edge of every provider, online and Batch API: one call, its errors translated.

Every failure becomes a ``ServingError`` that says whether a retry can help: 429 and 5xx,
timeouts and dropped connections are retryable; other 4xx carry the provider's own message
and are not. The API key is redacted from every message, so it can reach neither logs, the
state database (failed rows store their error) nor a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

import aiohttp
import orjson

from datamill.errors import ConfigError, InvalidResponseError, ServingError

REDACTED = "[REDACTED]"


class HTTPStatusError(ServingError):
    """A non-2xx answer; carries ``retry_after`` and, for a 429, the provider's RPM when sent.

    ``fatal`` (401, 403: the key is wrong or lacks access) means no request of this serving can
    succeed: the engine stops the run at once instead of failing every row one by one. A 404
    (wrong path, unknown model) and a 400 saying the model does not exist are ``systematic``
    too: the serving's circuit breaker stops the run on the first one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: float | None = None,
        provider_rpm: float | None = None,
        model_not_found: bool = False,
    ) -> None:
        super().__init__(
            message,
            status=status,
            retryable=status == 429 or status >= 500,
            systematic=_systematic_status(status, model_not_found),
        )
        self.retry_after = retry_after
        self.provider_rpm = provider_rpm
        self.fatal = status in (401, 403)


def _systematic_status(status: int, model_not_found: bool) -> str | None:
    if model_not_found:
        return "model not found"
    if status in (401, 403, 404):
        return f"HTTP {status}"
    return None


def says_model_not_found(status: int, body: str) -> bool:
    """Whether an error body says the model does not exist (OpenAI's ``model_not_found``
    code, Anthropic's 404 ``model:``, vLLM's "The model ... does not exist")."""
    if status not in (400, 404):
        return False
    try:
        error = json.loads(body).get("error", {})
    except (ValueError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    message = str(error.get("message", "")).lower()
    return (
        error.get("code") == "model_not_found"
        or (error.get("type") == "not_found_error" and message.startswith("model:"))
        or ("model" in message and ("does not exist" in message or "not found" in message))
    )


def connection_failure(exc: aiohttp.ClientError) -> str | None:
    """What a connection error says no retry can fix: refused, DNS, TLS; None when transient."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return "TLS failure"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused"
    return None


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds), else None."""
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


def parse_provider_rpm(headers: Any) -> float | None:
    """The requests-per-minute limit a provider states (``x-ratelimit-limit-requests``)."""
    value = headers.get("x-ratelimit-limit-requests") or headers.get("anthropic-ratelimit-requests-limit")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def provider_error_message(body: str) -> str:
    """The provider's own error message when the body carries one, else the raw body (trimmed).

    Reads OpenAI's ``{"error": {"message"}}``, Anthropic's ``{"type": "error", "error":
    {"message"}}`` and the nested ``{"error": {"error": {"message"}}}`` of some batch errors.
    """
    try:
        data = json.loads(body)
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("error"), dict):
            error = error["error"]
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    except (ValueError, AttributeError):
        pass
    return body[:500]


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced (keys shorter than 8 are left)."""
    if secret and len(secret) >= 8 and secret in text:
        return text.replace(secret, REDACTED)
    return text


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    timeout: float,
    secret: str | None = None,
    on_reply: Callable[[Mapping[str, str]], None] | None = None,
) -> bytes:
    """POST ``body`` as JSON and return the 2xx reply's bytes; raise a ``ServingError`` otherwise.

    ``on_reply`` sees the headers of every reply, errors included (the serving's limiter reads
    the provider's stated rate limits from them).

    The body is encoded by orjson (several times faster than the standard library, which
    aiohttp's ``json=`` uses); ``session`` comes from ``open_session``, whose headers declare
    it ``application/json``.
    """
    try:
        payload = orjson.dumps(body)
    except TypeError as exc:
        raise ConfigError(f"request body for {url} is not JSON-serialisable: {exc}") from None
    return await send(
        session, "POST", url, timeout=timeout, secret=secret, on_reply=on_reply, data=payload, headers=headers
    )


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout: float,
    secret: str | None = None,
    on_reply: Callable[[Mapping[str, str]], None] | None = None,
    data: Any = None,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """One HTTP call, online or Batch API: the 2xx reply's bytes, or a ``ServingError``.

    This is the one exception map of the serving layer. A non-2xx answer becomes an
    ``HTTPStatusError`` (retryable for 429 and 5xx, ``fatal`` for 401/403); a dropped or refused
    connection and a timeout become retryable ``ServingError`` values. Both timeout classes are
    caught: ``asyncio.TimeoutError`` is what aiohttp raises and, before Python 3.11, is not the
    builtin ``TimeoutError``. ``data``, ``json``, ``params`` and ``headers`` go to
    ``session.request``; the key ``secret`` is redacted from every message; ``on_reply`` sees the
    headers of every reply, errors included.
    """
    try:
        async with session.request(
            method, url, data=data, json=json, params=params, headers=headers
        ) as reply:
            data = await reply.read()
            if on_reply is not None:
                on_reply(reply.headers)
            if reply.status >= 400:
                text = data.decode(errors="replace")
                raise HTTPStatusError(
                    redact(
                        f"{method} {url} answered HTTP {reply.status}: {provider_error_message(text)}", secret
                    ),
                    status=reply.status,
                    retry_after=parse_retry_after(reply.headers),
                    provider_rpm=parse_provider_rpm(reply.headers) if reply.status == 429 else None,
                    model_not_found=says_model_not_found(reply.status, text),
                )
            return data
    except TimeoutError:
        raise ServingError(f"{method} {url} did not answer within {timeout}s", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise ServingError(
            redact(f"connection to {url} failed: {type(exc).__name__}: {exc}", secret),
            retryable=True,
            systematic=connection_failure(exc),
        ) from None


def decode_json(body: bytes, url: str) -> Any:
    """``body`` parsed as JSON; an unreadable body is a retryable ``InvalidResponseError``."""
    try:
        return orjson.loads(body)
    except ValueError:
        raise InvalidResponseError(f"{url} answered a body that is not JSON: {body[:200]!r}") from None


_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def resolve_api_key(explicit: str | None, env_name: str, url: str) -> str | None:
    """``explicit`` or the environment variable ``env_name``; only loopback URLs may go without."""
    key = explicit or os.environ.get(env_name)
    if not key and urlparse(url).hostname not in _LOOPBACK_HOSTS:
        raise ConfigError(
            f"no API key for {url}: set the {env_name} environment variable or pass api_key= to the serving"
        )
    return key


def open_session(
    headers: dict[str, str], max_workers: int, timeout: float, *, json_body: bool = True
) -> aiohttp.ClientSession:
    """One pooled aiohttp session: ``max_workers`` connections, a total timeout, and ``headers``
    on every request, plus ``Content-Type: application/json`` when every body is JSON (not for
    the Batch API, whose file uploads are multipart)."""
    if json_body:
        headers = {"Content-Type": "application/json", **headers}
    return aiohttp.ClientSession(
        headers=headers,
        connector=aiohttp.TCPConnector(limit=max_workers, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


def salt_seed(salt: str) -> int:
    """A stable sampling ``seed`` derived from a request's salt (how salts reach OpenAI)."""
    return int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % (2**31)
