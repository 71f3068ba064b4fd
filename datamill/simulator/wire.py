"""How each provider says things on the wire: JSON responses, error shapes, API-key checks.

The serving layer translates provider errors by their shape, so the simulator must send the
real shapes: OpenAI's ``{"error": {"message", "type", "param", "code"}}`` and Anthropic's
``{"type": "error", "error": {"type", "message"}}``. ``OPENAI`` and ``ANTHROPIC`` below are the
two dialects; endpoint modules and the shared online-call path take one of them.
"""

from __future__ import annotations

import json
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

JSON_CONTENT_TYPE = "application/json"

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return _encode(obj).encode()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response; the hot path uses it too, so it does nothing else."""
    return web.Response(
        body=_encode(obj).encode(), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
    )


def presented_api_key(request: web.Request) -> str | None:
    """The key a client sent: ``Authorization: Bearer KEY`` (OpenAI) or ``x-api-key`` (Anthropic)."""
    auth = request.headers.get("Authorization")
    if auth is not None and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def retry_after_headers(wait_seconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (at least 1) and the precise ``retry-after-ms``."""
    return {
        "Retry-After": str(max(1, math.ceil(wait_seconds))),
        "retry-after-ms": str(max(1, math.ceil(wait_seconds * 1000))),
    }


class OpenAIWire:
    """OpenAI's error dialect."""

    name = "openai"

    def error(
        self, status: int, message: str, kind: str, code: str | None = None, param: str | None = None
    ) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return json_response(body, status)

    def bad_request(self, message: str, param: str | None = None) -> web.Response:
        return self.error(400, message, "invalid_request_error", None, param)

    def not_found(self, message: str) -> web.Response:
        return self.error(404, message, "invalid_request_error", "not_found")

    def conflict(self, message: str) -> web.Response:
        return self.error(409, message, "invalid_request_error", "conflict")

    def unauthorized(self, presented: str | None, *, echo: bool = False) -> web.Response:
        shown = (
            f"{presented[:3]}...{presented[-4:]}"
            if presented and len(presented) > 8 and not echo
            else (presented or "")
        )
        message = (
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return self.error(401, message, "invalid_request_error", "invalid_api_key")

    def rate_limited(self, wait_seconds: float, rpm: int) -> web.Response:
        message = (
            f"Rate limit reached for requests on requests per min (RPM): Limit {rpm}. "
            f"Please try again in {wait_seconds:.3f}s."
        )
        response = self.error(429, message, "requests", "rate_limit_exceeded")
        response.headers.update(retry_after_headers(wait_seconds))
        response.headers.update(self.rate_limit_headers(rpm, 0, wait_seconds))
        return response

    def model_not_found(self, model: str) -> web.Response:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return self.error(404, message, "invalid_request_error", "model_not_found")

    def rate_limit_headers(self, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        """The ``x-ratelimit-*-requests`` headers OpenAI sends on every reply."""
        return {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset_seconds:.3f}s",
        }

    def server_error(self) -> web.Response:
        return self.error(
            500, "The server had an error while processing your request. Sorry about that!", "server_error"
        )

    def malformed(self, rng: random.Random, response_id: str) -> web.Response:
        """HTTP 200 whose body is cut-off JSON, or JSON without ``choices``/``data``."""
        if rng.random() < 0.5:
            body = b'{"id": "' + response_id.encode() + b'", "object": "chat.completion", "choi'
        else:
            body = dumps({"id": response_id, "object": "chat.completion", "created": 0})
        return web.Response(body=body, content_type=JSON_CONTENT_TYPE)


class AnthropicWire:
    """Anthropic's error dialect."""

    name = "anthropic"
    _TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        409: "invalid_request_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
    }

    def error(self, status: int, message: str, kind: str | None = None) -> web.Response:
        body = {
            "type": "error",
            "error": {"type": kind or self._TYPES.get(status, "api_error"), "message": message},
        }
        return json_response(body, status)

    def bad_request(self, message: str, param: str | None = None) -> web.Response:
        return self.error(400, message)

    def not_found(self, message: str) -> web.Response:
        return self.error(404, message)

    def conflict(self, message: str) -> web.Response:
        return self.error(409, message)

    def unauthorized(self, presented: str | None, *, echo: bool = False) -> web.Response:
        return self.error(401, f"invalid x-api-key {presented}" if echo else "invalid x-api-key")

    def rate_limited(self, wait_seconds: float, rpm: int) -> web.Response:
        response = self.error(429, f"Number of requests has exceeded your per-minute rate limit ({rpm}).")
        response.headers.update(retry_after_headers(wait_seconds))
        response.headers.update(self.rate_limit_headers(rpm, 0, wait_seconds))
        return response

    def model_not_found(self, model: str) -> web.Response:
        return self.error(404, f"model: {model}")

    def rate_limit_headers(self, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        """The ``anthropic-ratelimit-requests-*`` headers Anthropic sends on every reply."""
        reset = datetime.fromtimestamp(time.time() + reset_seconds, tz=UTC)
        return {
            "anthropic-ratelimit-requests-limit": str(limit),
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def server_error(self) -> web.Response:
        return self.error(500, "Internal server error")

    def malformed(self, rng: random.Random, response_id: str) -> web.Response:
        """HTTP 200 whose body is cut-off JSON, or a message without ``content``."""
        if rng.random() < 0.5:
            body = b'{"id": "' + response_id.encode() + b'", "type": "message", "cont'
        else:
            body = dumps({"id": response_id, "type": "message", "role": "assistant"})
        return web.Response(body=body, content_type=JSON_CONTENT_TYPE)


Wire = OpenAIWire | AnthropicWire

OPENAI = OpenAIWire()
ANTHROPIC = AnthropicWire()
