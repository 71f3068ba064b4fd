"""``OpenAILLM`` and ``AnthropicLLM``: distilabel's model classes, as datamill servings.

Each holds distilabel's settings (``model``, ``base_url``, ``api_key``, ``max_retries``,
``timeout``, ``generation_kwargs``, ``use_offline_batch_generation``,
``offline_batch_generation_block_until_done``) and builds the datamill serving that runs the
calls (``APILLMServing_request`` / ``AnthropicLLMServing``) when the pipeline runs, so runtime
parameters set by ``pipeline.run(parameters=...)`` apply. Caching, retries, rate limits and the
Batch API are the serving's: offline jobs are recorded before anything else and a rerun polls
them instead of submitting again.

``generation_kwargs`` takes distilabel's names; an unknown one is a ``ConfigError`` (never a
parameter sent to the provider and paid for). As in distilabel, ``max_new_tokens``
(``max_tokens`` for Anthropic) is 128 unless given.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from datamill.distilabel.base import check_runtime_parameters
from datamill.errors import ConfigError

DEFAULT_MAX_TOKENS = 128


class LLM:
    """What the two model classes share: settings, runtime parameters, building the serving."""

    #: distilabel's generation keyword -> the request parameter datamill sends.
    GENERATION_KWARGS: ClassVar[dict[str, str]] = {}
    #: The keyword holding the completion length, defaulted to 128 as in distilabel.
    LENGTH_KWARG: ClassVar[str] = ""
    RUNTIME_PARAMETERS: ClassVar[tuple[str, ...]] = (
        "base_url",
        "api_key",
        "max_retries",
        "timeout",
        "generation_kwargs",
        "use_offline_batch_generation",
        "offline_batch_generation_block_until_done",
    )

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str | None,
        max_retries: int,
        timeout: float,
        generation_kwargs: dict[str, Any] | None,
        use_offline_batch_generation: bool,
        offline_batch_generation_block_until_done: float | None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        # distilabel passes a pydantic SecretStr; datamill's servings take the plain key.
        self.api_key = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else api_key
        self.max_retries = max_retries
        self.timeout = timeout
        self.generation_kwargs = dict(generation_kwargs or {})
        self.use_offline_batch_generation = use_offline_batch_generation
        self.offline_batch_generation_block_until_done = offline_batch_generation_block_until_done
        self.request_params()  # refuse unknown generation_kwargs at construction

    @property
    def model_name(self) -> str:
        return self.model

    def set_runtime_parameters(self, values: dict[str, Any]) -> None:
        """Apply ``parameters={task.name: {"llm": values}}``; unknown names are refused."""
        check_runtime_parameters(values, self.RUNTIME_PARAMETERS, type(self).__name__)
        for key, value in values.items():
            setattr(self, key, dict(value or {}) if key == "generation_kwargs" else value)
        self.request_params()

    def request_params(self) -> dict[str, Any]:
        """``generation_kwargs`` as request parameters (datamill's names), with the length default."""
        unknown = sorted(set(self.generation_kwargs) - set(self.GENERATION_KWARGS))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} generation_kwargs has no {unknown}; it takes {sorted(self.GENERATION_KWARGS)}"
            )
        params = {self.GENERATION_KWARGS[key]: value for key, value in self.generation_kwargs.items()}
        params.setdefault(self.GENERATION_KWARGS[self.LENGTH_KWARG], DEFAULT_MAX_TOKENS)
        return {key: value for key, value in params.items() if value is not None}

    #: The name, in ``datamill``, of the serving class that runs this model's calls.
    SERVING: ClassVar[str] = ""

    def build_serving(self) -> Any:
        """The datamill serving that runs this model's calls (a fresh one per pipeline run)."""
        import datamill

        serving_class = getattr(datamill, self.SERVING)
        return serving_class(
            api_url=self.base_url,
            model_name=self.model,
            api_key=self.api_key,
            max_retries=self.max_retries,
            timeout=float(self.timeout),
            use_offline_batch_generation=self.use_offline_batch_generation,
            offline_batch_generation_block_until_done=self.offline_batch_generation_block_until_done,
            params=self.request_params(),
        )


class OpenAILLM(LLM):
    """An OpenAI-compatible chat-completions endpoint (``base_url`` such as ``https://api.openai.com/v1``).

    ``base_url`` defaults to ``OPENAI_BASE_URL`` or OpenAI's API; ``api_key`` to ``OPENAI_API_KEY``.
    """

    GENERATION_KWARGS = {
        "max_new_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "frequency_penalty": "frequency_penalty",
        "presence_penalty": "presence_penalty",
        "stop": "stop",
        "logprobs": "logprobs",
        "top_logprobs": "top_logprobs",
        "response_format": "response_format",
    }
    LENGTH_KWARG = "max_new_tokens"
    SERVING = "APILLMServing_request"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 6,
        timeout: float = 120,
        generation_kwargs: dict[str, Any] | None = None,
        use_offline_batch_generation: bool = False,
        offline_batch_generation_block_until_done: float | None = None,
    ) -> None:
        super().__init__(
            model=model,
            base_url=base_url or os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            api_key=api_key,
            max_retries=max_retries,
            timeout=timeout,
            generation_kwargs=generation_kwargs,
            use_offline_batch_generation=use_offline_batch_generation,
            offline_batch_generation_block_until_done=offline_batch_generation_block_until_done,
        )


class AnthropicLLM(LLM):
    """Anthropic's Messages API (``base_url`` such as ``https://api.anthropic.com``).

    ``base_url`` defaults to ``ANTHROPIC_BASE_URL`` or Anthropic's API; ``api_key`` to
    ``ANTHROPIC_API_KEY``. Offline batch generation goes through Message Batches.
    """

    GENERATION_KWARGS = {
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "stop_sequences": "stop_sequences",
    }
    LENGTH_KWARG = "max_tokens"
    SERVING = "AnthropicLLMServing"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 6,
        timeout: float = 600,
        generation_kwargs: dict[str, Any] | None = None,
        use_offline_batch_generation: bool = False,
        offline_batch_generation_block_until_done: float | None = None,
    ) -> None:
        super().__init__(
            model=model,
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
            api_key=api_key,
            max_retries=max_retries,
            timeout=timeout,
            generation_kwargs=generation_kwargs,
            use_offline_batch_generation=use_offline_batch_generation,
            offline_batch_generation_block_until_done=offline_batch_generation_block_until_done,
        )
