"""``LocalModelLLMServing_vllm``: offline generation with vLLM's ``LLM.generate`` on a local GPU.

vLLM batches best when it sees many prompts at once, so requests are gathered while the
worker thread is busy and handed to ``LLM.chat``/``LLM.generate`` together (up to
``batch_size``). The engine is created on ``start()`` in the worker thread; vLLM is imported
only then (``pip install 'datamill[vllm]'``; needs a CUDA GPU). Responses go through the same
request cache and commit protocol as API calls; their cost is 0.
"""

from __future__ import annotations

from typing import Any

from datamill.errors import ConfigError, ServingError
from datamill.serving.local_transformers import LocalModelLLMServing_transformers
from datamill.serving.types import GenericRequest, GenericResponse

INSTALL_HINT = "pip install 'datamill[vllm]'  (needs a CUDA GPU)"


def import_vllm() -> Any:
    """The ``vllm`` module, or a ``ConfigError`` saying what to install."""
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"LocalModelLLMServing_vllm needs vllm: {INSTALL_HINT} ({exc})") from None
    return vllm


class LocalModelLLMServing_vllm(LocalModelLLMServing_transformers):  # noqa: N801 - DataFlow name
    """Chat generation with vLLM. ``engine_args`` go to ``vllm.LLM`` (``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len``, ...). ``max_tokens``, ``temperature``,
    ``top_p``, ``n`` and ``seed`` map to ``SamplingParams``.

    Structured output by guided decoding: ``response_format`` ``json_schema`` / ``json_object``
    becomes vLLM's ``StructuredOutputsParams`` (or ``GuidedDecodingParams`` before vLLM 0.11),
    so replies are held to the schema as they are generated. A vLLM without either fails the
    requests that ask for it, saying which version to install.
    """

    provider = "local-vllm"
    structured_output: frozenset[str] = frozenset({"json_schema", "json_object"})

    def __init__(
        self,
        model_name: str,
        *,
        batch_size: int = 256,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float | None = None,
        seed: int | None = None,
        engine_args: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            model_name,
            device="cuda",
            batch_size=batch_size,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            params=params,
        )
        self.engine_args = dict(engine_args or {})

    def _load(self) -> None:
        vllm = import_vllm()
        self._model = vllm.LLM(model=self.model_name, **self.engine_args)
        self._tokenizer = self._model.get_tokenizer()

    def generate_batch(self, requests: list[GenericRequest]) -> list[GenericResponse]:
        vllm = import_vllm()
        results: dict[int, GenericResponse] = {}
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(sampling_key(request), []).append(index)
        for indices in groups.values():
            params = requests[indices[0]].params
            sampling = vllm.SamplingParams(
                n=int(params.get("n") or 1),
                temperature=float(params.get("temperature") or 0.0),
                top_p=float(params.get("top_p") or 1.0),
                max_tokens=int(params.get("max_tokens") or 256),
                seed=params.get("seed"),
                **guided_decoding(params.get("response_format")),
            )
            conversations = [requests[i].messages for i in indices]
            outputs = self._model.chat(conversations, sampling, use_tqdm=False)
            for index, output in zip(indices, outputs, strict=True):
                texts = [choice.text for choice in output.outputs]
                completion = sum(len(choice.token_ids) for choice in output.outputs)
                results[index] = GenericResponse(
                    texts, len(output.prompt_token_ids or []), completion, model=self.model_name
                )
        return [results[i] for i in range(len(requests))]


def guided_decoding(response_format: Any) -> dict[str, Any]:
    """The ``SamplingParams`` keyword that holds replies to ``response_format`` ({} for none)."""
    if not isinstance(response_format, dict):
        return {}
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    what: dict[str, Any] = {"json": schema} if schema is not None else {"json_object": True}
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(**what)}
    except ImportError:
        pass
    try:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(**what)}
    except ImportError:
        raise ServingError(
            "this vLLM has no guided decoding for structured output: pip install 'vllm>=0.6.3'"
        ) from None


def sampling_key(request: GenericRequest) -> tuple[Any, ...]:
    """Requests with equal sampling settings go to vLLM in one call."""
    p = request.params
    fmt = p.get("response_format")
    return (p.get("n"), p.get("temperature"), p.get("top_p"), p.get("max_tokens"), p.get("seed"), repr(fmt))
