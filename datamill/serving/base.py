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

import difflib
import functools
import inspect
from abc import ABC, abstractmethod
from typing import Any

from datamill.core.fingerprint import strip_excluded
from datamill.errors import ConfigError
from datamill.serving.pricing import Price, resolve_price, unknown_price_error, warn_unknown_price
from datamill.serving.ratelimit import ServingLimiter
from datamill.serving.retry import RetryPolicy
from datamill.serving.tokens import estimate_prompt_tokens
from datamill.serving.types import GenericRequest, GenericResponse


def check_options(owner: str, init: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise ``ConfigError`` unless ``init(self, *args, **kwargs)`` matches its signature; an
    unknown keyword names the closest valid option (``difflib``)."""
    signature = inspect.signature(init)
    accepted = list(signature.parameters)[1:]
    if all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        for name in kwargs:
            if name not in signature.parameters:
                close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"{owner} has no option {name!r}: {hint}its options are {', '.join(accepted)}; "
                    "other generation parameters go in params={...}"
                )
    try:
        signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{owner}: {exc}") from None


def _checked(owner: str, init: Any) -> Any:
    @functools.wraps(init)  # keeps the signature that help() and inspect.signature show
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        check_options(owner, init, args, kwargs)
        init(self, *args, **kwargs)

    return __init__


class LLMServingABC(ABC):
    """Base of every LLM backend.

    Subclasses set ``provider`` and ``model_name`` and implement ``send_once``. ``params`` are
    the generation parameters sent with every request (temperature, max_tokens, ...); they are
    part of the request key and of the step fingerprint. ``supports_n`` says whether one call
    can return ``n`` choices; where it cannot, ``build_requests(..., n=k)`` makes k salted
    requests. ``invalid_reply_retries`` bounds how often a reply that fails an operator's
    validation is asked again (an operator's own attribute of that name wins).
    ``structured_output`` names the ``response_format`` types the backend honours
    (``json_schema``, ``json_object``); an operator asking for another fails ``compile()``.
    Constructors take named options only: an unknown keyword is a ``ConfigError`` naming the
    closest valid option, raised before the constructor runs, so nothing is ever sent with it
    (a misspelt option would otherwise be a generation parameter sent to the provider, put in
    every request key and paid for). Subclasses get the check by defining ``__init__``.
    """

    provider: str = "generic"
    supports_n: bool = True
    invalid_reply_retries: int = 2
    structured_output: frozenset[str] = frozenset({"json_schema", "json_object"})
    #: Run this serving's steps through the provider's Batch API (``datamill.serving.offline``).
    use_offline_batch_generation: bool = False
    #: With offline batches: poll every SECONDS until the jobs end (None: stop after submitting).
    offline_batch_generation_block_until_done: float | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked(cls.__name__, cls.__dict__["__init__"])  # type: ignore[method-assign]

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

    def require_structured_output(self, kind: str, asked_by: str, instead: str = "") -> None:
        """Raise ``ConfigError`` unless this backend honours ``response_format`` type ``kind``."""
        if kind not in self.structured_output:
            supported = ", ".join(sorted(self.structured_output)) or "no structured output"
            raise ConfigError(
                f"{asked_by} asks {type(self).__name__} ({self.model_name!r}) for {kind} replies, but "
                f"this backend supports {supported}. {instead or 'Use a backend that supports it.'}"
            )

    def batch_provider(self) -> Any:
        """The ``datamill.serving.offline`` provider of this serving's Batch API."""
        raise ConfigError(f"{type(self).__name__} has no Batch API: leave use_offline_batch_generation off")

    def require_price(self) -> Price:
        """The price, or a ``ConfigError`` saying how to give one (for ``max_cost_usd``)."""
        price = self.price
        if price is None:
            raise unknown_price_error(self.model_name)
        return price
