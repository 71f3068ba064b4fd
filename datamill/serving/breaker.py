"""The circuit breaker of a serving: stop a run whose requests cannot succeed, for any row.

Some failures say nothing about the row being sent: the server refuses connections, its host
name does not resolve, TLS fails, the endpoint answers 404, the model does not exist, the key
is refused. Retrying each row six times only turns a wrong port into hours of futile requests,
so the send lane asks the breaker about every failure and stops the serving when it trips.

- An answer that says so (401, 403, 404, an unknown model) trips it at once: the provider
  told us the endpoint, the model or the key is wrong.
- A connection that cannot be made (refused, DNS, TLS) trips it after ``streak`` such
  failures in a row when the serving has not succeeded yet in this run, or when they have
  gone on for ``grace_seconds`` since its last success (a server restarting is waited for).
- Anything else (a 400 about one row's content, a 5xx, a timeout) is not the breaker's
  business: the row's own retries handle it, and an answered request ends a connection streak.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from datamill.errors import ServingError, ServingStoppedError
from datamill.serving.base import LLMServingABC

CONNECTION_CAUSES = ("connection refused", "DNS lookup failed", "TLS failure")

#: The path an endpoint of each provider ends in, for the 404 hint.
EXPECTED_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


class CircuitBreaker:
    """Watches one serving's failures; ``record_failure`` says when to stop the serving."""

    def __init__(
        self, *, streak: int = 3, grace_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.streak_limit = streak
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.succeeded = False
        self.streak = 0
        self.streak_started = 0.0
        self.failures = 0

    def record_success(self) -> None:
        self.succeeded = True
        self.streak = 0

    def record_failure(self, error: ServingError) -> bool:
        """Count ``error``; True when the serving must stop (see the module docstring)."""
        cause = error.systematic
        if cause is None:
            if error.status is not None:  # the server answered: the connection works
                self.streak = 0
            return False
        self.failures += 1
        if cause not in CONNECTION_CAUSES:
            return True
        now = self.clock()
        if self.streak == 0:
            self.streak_started = now
        self.streak += 1
        if self.streak < self.streak_limit:
            return False
        return not self.succeeded or now - self.streak_started >= self.grace_seconds


def stop_error(serving: LLMServingABC, error: ServingError, failures: int) -> ServingStoppedError:
    """The one message a stopped serving leaves: what failed, for which URL and model, what to check."""
    url = str(getattr(serving, "api_url", "") or "(no URL)")
    model = serving.model_name
    cause = error.systematic or "failed"
    message = (
        f"stopped the run: requests to {url} (model {model!r}) fail with {cause}, which no row can "
        f"fix ({failures} failed this way). Check {_what_to_check(serving, cause, url)}. "
        f"Committed rows are kept; rerun the same command to resume once this is fixed.\n"
        f"  last error: {error}"
    )
    return ServingStoppedError(
        message, url=url, model=model, cause=cause, failures=failures, status=error.status
    )


def _what_to_check(serving: LLMServingABC, cause: str, url: str) -> str:
    if cause == "connection refused":
        return f"that the server is running and that the host and port of {url} are right"
    if cause == "DNS lookup failed":
        return f"the host name in {url}"
    if cause == "TLS failure":
        return f"http:// versus https:// in {url} and the server's certificate"
    if cause == "model not found":
        return f"the model name {serving.model_name!r}: the provider does not serve it"
    if cause == "HTTP 404":
        expected = EXPECTED_PATHS.get(getattr(serving, "provider", ""), "")
        path = f" (expected a URL ending in {expected})" if expected else ""
        return f"the path of {url}{path}, and the model name {serving.model_name!r}"
    if cause in ("HTTP 401", "HTTP 403"):
        return "the API key (api_key= or its environment variable) and that it may use this model"
    return f"the serving's settings for {url}"
