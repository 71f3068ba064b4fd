"""``LocalModelLLMServing_transformers``: a Hugging Face transformers model in this process.

For small models and CPU runs (and tests). Generation runs in one worker thread, so the event
loop keeps committing batches and answering cache hits meanwhile; requests are grouped into
micro-batches of up to ``batch_size`` (those waiting when the worker is free) and generated
together with left padding. The model is loaded on ``start()``, lazily: ``import datamill``
never imports torch or transformers.

Install with ``pip install 'datamill[local]'``. ``model_name`` is a Hub id or a local
directory; a ready ``model``/``tokenizer`` pair may be passed instead (tests build tiny ones).
Responses go through the same request cache and commit protocol as API calls; their cost is 0.

``generate_remotely`` hands micro-batches to another generator instead (the Ray executor's
model actors, ``datamill.serving.ray_models``): the serving then never loads the model here,
and its answers still reach the request cache through the dispatcher like any other.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from datamill.errors import ConfigError, ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.http import salt_seed
from datamill.serving.pricing import Price
from datamill.serving.types import GenericRequest, GenericResponse

INSTALL_HINT = "pip install 'datamill[local]'  (torch and transformers)"

#: Generates one micro-batch elsewhere (e.g. on a Ray actor): requests in, responses in order.
RemoteGenerator = Callable[[list[GenericRequest]], Awaitable[list[GenericResponse]]]


def import_local_stack() -> tuple[Any, Any]:
    """``(torch, transformers)``, or a ``ConfigError`` saying what to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError(
            f"LocalModelLLMServing_transformers needs torch and transformers: {INSTALL_HINT} ({exc})"
        ) from None
    return torch, transformers


class LocalModelLLMServing_transformers(LLMServingABC):  # noqa: N801 - name kept for pipelines ported from DataFlow
    """Chat generation with a local causal LM through transformers (CPU by default).

    Prompts are rendered with the tokenizer's chat template when it has one, else as
    ``role: content`` lines followed by ``assistant:``. ``max_tokens`` (default 256),
    ``temperature`` (0 = greedy), ``top_p`` and ``n`` are honoured; ``seed`` or a request salt
    seeds sampling, so a salted retry samples differently.

    No structured output: plain ``generate`` cannot hold a reply to a schema, so an operator
    that asks for ``response_format`` (``StructuredGenerator``, ``LLMScorer``) fails
    ``compile()`` with this backend; ``LLMScorer(use_response_format=False)`` parses the score
    from free text instead.
    """

    provider = "local-transformers"
    structured_output: frozenset[str] = frozenset()

    def __init__(
        self,
        model_name: str = "",
        *,
        model: Any = None,
        tokenizer: Any = None,
        device: str = "cpu",
        batch_size: int = 8,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float | None = None,
        seed: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if not model_name and model is None:
            raise ConfigError(
                "LocalModelLLMServing_transformers needs model_name (a Hub id or a directory) or model="
            )
        name = (
            model_name or getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
        )
        super().__init__(
            name,
            max_workers=max(1, batch_size) * 2,
            params={
                **(params or {}),
                "max_tokens": max_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "seed": seed,
            },
            price_per_million=Price(0.0, 0.0),
        )
        self.device = device
        self.batch_size = max(1, batch_size)
        self._model = model
        self._tokenizer = tokenizer
        self._executor: ThreadPoolExecutor | None = None
        self._queue: list[tuple[GenericRequest, asyncio.Future[GenericResponse]]] = []
        self._workers: set[asyncio.Task[None]] = set()
        self._remote: RemoteGenerator | None = None
        self._parallel = 1

    def __getstate__(self) -> dict[str, Any]:
        """A serving pickles as its configuration (and a model object passed in): no thread,
        queue or remote generator travels, so a copy can be sent to a Ray actor."""
        state = dict(self.__dict__)
        state.update(_executor=None, _queue=[], _workers=set(), _remote=None, _parallel=1, _limiter=None)
        return state

    def generate_remotely(self, generate: RemoteGenerator | None, *, parallel: int = 1) -> None:
        """Generate micro-batches with ``generate`` instead of in this process, up to
        ``parallel`` at once (one per model replica); None goes back to local generation.
        Call it before ``start()``: with a remote generator the model is not loaded here.
        """
        self._remote = generate
        self._parallel = max(1, parallel) if generate is not None else 1
        self.max_workers = self.batch_size * 2 * self._parallel

    def load_model(self) -> None:
        """Load the model and tokenizer unless given (in this process; blocking). A model
        passed in is put in inference mode too: generation must not sample dropout."""
        if self._model is None or self._tokenizer is None:
            self._load()
        elif callable(getattr(self._model, "eval", None)):
            self._model.eval()

    async def start(self) -> None:
        if self._remote is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datamill-local-model")
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load_model)

    async def close(self) -> None:
        workers, self._workers = list(self._workers), set()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for _, future in self._queue:
            if not future.done():
                future.set_exception(ServingError("the serving was closed"))
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        await super().close()

    async def send_once(self, request: GenericRequest) -> GenericResponse:
        if self._executor is None and self._remote is None:
            await self.start()
        future: asyncio.Future[GenericResponse] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._workers = {worker for worker in self._workers if not worker.done()}
        if len(self._workers) < self._parallel:
            self._workers.add(asyncio.ensure_future(self._drain()))
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # requests sent in the same loop turn share a micro-batch
        while self._queue:
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
            requests = [request for request, _ in batch]
            try:
                if self._remote is not None:
                    responses = await self._remote(requests)
                else:
                    responses = await loop.run_in_executor(self._executor, self.generate_batch, requests)
            except Exception as exc:  # a generation error fails these requests, not the loop
                error = (
                    exc
                    if isinstance(exc, ServingError)
                    else ServingError(f"local generation failed: {type(exc).__name__}: {exc}")
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), response in zip(batch, responses, strict=True):
                if not future.done():
                    future.set_result(response)

    # --- worker thread -------------------------------------------------------------------

    def _load(self) -> None:
        _, transformers = import_local_stack()
        source = os.path.expanduser(self.model_name)
        if self._tokenizer is None:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        if self._model is None:
            self._model = transformers.AutoModelForCausalLM.from_pretrained(source)
        self._model.to(self.device)
        self._model.eval()

    def render_prompt(self, messages: list[dict[str, Any]]) -> str:
        template = getattr(self._tokenizer, "chat_template", None)
        if template:
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def generate_batch(self, requests: list[GenericRequest]) -> list[GenericResponse]:
        """Generate every request of a micro-batch (runs in the worker thread)."""
        torch, _ = import_local_stack()
        tokenizer, model = self._tokenizer, self._model
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(_generation_key(request), []).append(index)
        results: dict[int, GenericResponse] = {}
        for indices in groups.values():
            first = requests[indices[0]]
            params = first.params
            n = int(params.get("n") or 1)
            temperature = float(params.get("temperature") or 0.0)
            prompts = [self.render_prompt(requests[i].messages) for i in indices]
            encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
            if temperature > 0:
                seed = params.get("seed")
                torch.manual_seed(int(seed) if seed is not None else salt_seed(first.salt or ""))
            with torch.no_grad():
                output = model.generate(
                    **encoded,
                    max_new_tokens=int(params.get("max_tokens") or 256),
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=params.get("top_p") if temperature > 0 else None,
                    num_return_sequences=n,
                    pad_token_id=tokenizer.pad_token_id,
                )
            prompt_length = encoded["input_ids"].shape[1]
            for position, index in enumerate(indices):
                rows = output[position * n : (position + 1) * n, prompt_length:]
                texts = [tokenizer.decode(row, skip_special_tokens=True) for row in rows]
                completion = int(sum(int((row != tokenizer.pad_token_id).sum()) for row in rows))
                prompt_tokens = int(encoded["attention_mask"][position].sum())
                results[index] = GenericResponse(texts, prompt_tokens, completion, model=self.model_name)
        return [results[i] for i in range(len(requests))]


def _generation_key(request: GenericRequest) -> str:
    """Requests with equal generation settings are generated together."""
    params = request.params
    return repr(
        (
            params.get("n"),
            params.get("temperature"),
            params.get("max_tokens"),
            params.get("top_p"),
            request.salt,
        )
    )
