"""What every LLM serving provides to the engine.

A serving knows how to turn a ``GenericRequest`` into one HTTP call (or one local generation)
and back. Caching, in-run de-duplication, concurrency and retries are the dispatcher's job
(``datamill.serving.dispatch``), so a backend implements ``send_once`` and nothing else.

Limits (``max_workers``, ``rpm``, ``tpm``) live on the serving's ``ServingLimiter``, shared by
every operator using the serving. Prices come from ``datamill.serving.pricing``:
``price_per_million`` (or a ``Price`` assigned to ``serving.price``) wins over the catalogue,
and a model without either has an unknown price (``cost_usd`` returns None).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from datamill.core.fingerprint import strip_excluded
from datamill.errors import ConfigError
from datamill.serving.pricing import Price, resolve_price, unknown_price_error, warn_unknown_price
from datamill.serving.ratelimit import ServingLimiter
from datamill.serving.retry import RetryPolicy
from datamill.serving.tokens import estimate_prompt_tokens
from datamill.serving.types import GenericRequest, GenericResponse


class LLMServingABC(ABC):
    """Base of every LLM backend.

    Subclasses set ``provider`` and ``model_name`` and implement ``send_once``. ``params`` are
    the generation parameters sent with every request (temperature, max_tokens, ...); they are
    part of the request key and of the step fingerprint. ``supports_n`` says whether one call
    can return ``n`` choices; where it cannot, ``build_requests(..., n=k)`` makes k salted
    requests. ``invalid_reply_retries`` bounds how often a reply that fails an operator's
    validation is asked again (an operator's own attribute of that name wins).
    """

    provider: str = "generic"
    supports_n: bool = True
    invalid_reply_retries: int = 2
    #: Run this serving's steps through the provider's Batch API (``datamill.serving.offline``).
    use_offline_batch_generation: bool = False
    #: With offline batches: poll every SECONDS until the jobs end (None: stop after submitting).
    offline_batch_generation_block_until_done: float | None = None

    def __init__(
        self,
        model_name: str,
        *,
        max_workers: int = 16,
        retry: RetryPolicy | None = None,
        params: dict[str, Any] | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        price_per_million: dict[str, float] | Price | None = None,
    ) -> None:
        self.model_name = model_name
        self.max_workers = max(1, int(max_workers))
        self.retry = retry or RetryPolicy()
        self.params = {k: v for k, v in (params or {}).items() if v is not None}
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be a positive number or None, got {value!r}")
        self.rpm = rpm
        self.tpm = tpm
        #: USD per 1M tokens: ``price_per_million``, else the catalogue's; None when unknown.
        #: Looked up now, so the first reply of a run never waits for the catalogue to load.
        self.price: Price | None = resolve_price(model_name, price_per_million, self.provider)
        self._unknown_price_warned = False
        self._limiter: ServingLimiter | None = None

    # --- engine-facing ---------------------------------------------------------------

    def build_request(self, messages: list[dict[str, Any]], **extra_params: Any) -> GenericRequest:
        params = dict(self.params)
        params.update({k: v for k, v in extra_params.items() if v is not None})
        return GenericRequest(self.provider, self.model_name, messages, params)

    def build_requests(
        self, messages: list[dict[str, Any]], *, n: int = 1, **extra_params: Any
    ) -> list[GenericRequest]:
        """The requests that together yield ``n`` replies to ``messages``.

        One request with ``n`` where the backend supports it, else ``n`` requests salted
        ``sample-0`` .. ``sample-{n-1}`` (distinct keys, so the cache keeps each sample).
        """
        if n <= 1:
            return [self.build_request(messages, **extra_params)]
        if self.supports_n:
            return [self.build_request(messages, n=n, **extra_params)]
        request = self.build_request(messages, **extra_params)
        return [request.with_salt(f"sample-{i}") for i in range(n)]

    def fingerprint_config(self) -> dict[str, Any]:
        return strip_excluded({"provider": self.provider, "model": self.model_name, "params": self.params})

    @property
    def limiter(self) -> ServingLimiter:
        """The limits shared by every operator that uses this serving (one per run)."""
        if self._limiter is None:
            self._limiter = ServingLimiter(self.max_workers, rpm=self.rpm, tpm=self.tpm)
        return self._limiter

    def estimate_tokens(self, request: GenericRequest) -> int:
        """Prompt tokens of ``request`` plus its ``max_tokens``: the TPM charge before sending."""
        prompt = estimate_prompt_tokens(request.messages, request.model)
        max_tokens = request.params.get("max_tokens") or request.params.get("max_completion_tokens") or 0
        return prompt + int(max_tokens) * int(request.params.get("n") or 1)

    async def start(self) -> None:
        """Open connections; called once per run inside the run's event loop."""

    async def close(self) -> None:
        """Release connections; the serving can be started again by a later run."""
        self._limiter = None
        self._unknown_price_warned = False

    @abstractmethod
    async def send_once(self, request: GenericRequest) -> GenericResponse:
        """One attempt at one request. Raise ``ServingError`` (with ``retryable``) on failure."""

    def cost_usd(self, response: GenericResponse) -> float | None:
        """What ``response`` cost in USD from its ``usage``, or None when the price is unknown.

        Offline (Batch API) responses get the batch price. The first unknown cost of a run
        logs one warning naming the model and how to give a price.
        """
        price = self.price
        if price is None:
            if not self._unknown_price_warned:
                self._unknown_price_warned = True
                warn_unknown_price(self.model_name, self.provider)
            return None
        return price.cost(response.prompt_tokens, response.completion_tokens, offline=response.offline)

    def batch_provider(self) -> Any:
        """The ``datamill.serving.offline`` provider of this serving's Batch API."""
        raise ConfigError(f"{type(self).__name__} has no Batch API: leave use_offline_batch_generation off")

    def require_price(self) -> Price:
        """The price, or a ``ConfigError`` saying how to give one (for ``max_cost_usd``)."""
        price = self.price
        if price is None:
            raise unknown_price_error(self.model_name)
        return price
