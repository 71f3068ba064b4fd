"""OpenAI's online endpoints: chat completions, embeddings and the model list.

``answer_chat`` is also what the Batch API runs for each input line, so a batch line's reply is
byte-for-byte the online reply to the same body (apart from the response id and timestamp).
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from aiohttp import web

from datamill.simulator.online import Answer, check_api_key, handle_model_call
from datamill.simulator.replies import (
    InvalidRequest,
    check_messages_body,
    choice_content,
    embedding_vector,
    estimate_tokens,
    last_user_text,
    prompt_chars,
    request_hash,
)
from datamill.simulator.state import STATE_KEY, SimulatorState
from datamill.simulator.wire import OPENAI, json_response

MAX_CHOICES = 128
_MODEL_CREATED = 1_700_000_000


def answer_chat(body: Any, state: SimulatorState) -> Answer:
    """The chat completion for ``body`` (see ``replies.py`` for the text rule)."""
    check_messages_body(body)
    if body.get("stream"):
        raise InvalidRequest("stream=true is not supported by the datamill simulator")
    n = body.get("n")
    n = 1 if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES:
        raise InvalidRequest(f"'n' must be an integer between 1 and {MAX_CHOICES}")
    model = body["model"]
    messages = body["messages"]
    params = {k: v for k, v in body.items() if k != "model" and k != "messages"}
    h = request_hash(model, messages, params)
    user_text = last_user_text(messages)
    response_format = body.get("response_format")
    choices = []
    completion_tokens = 0
    for i in range(n):
        content = choice_content(model, h, i, user_text, response_format, state.config.invalid_reply_rate)
        completion_tokens += estimate_tokens(len(content))
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        )
    prompt_tokens = estimate_tokens(prompt_chars(messages))
    reply = {
        "id": state.response_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_datamill_simulator",
    }
    return Answer(h, reply, prompt_tokens, completion_tokens)


def answer_embeddings(body: Any, state: SimulatorState) -> Answer:
    """Deterministic embeddings: one vector per input item, unit length, from sha256 of the item."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise InvalidRequest("you must provide a model parameter")
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise InvalidRequest("'input' must be a non-empty string or array")
    dim = body.get("dimensions") or state.config.embedding_dim
    if not isinstance(dim, int) or dim < 1:
        raise InvalidRequest("'dimensions' must be a positive integer")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'")
    model = body["model"]
    params = {k: v for k, v in body.items() if k != "model" and k != "input"}
    data = []
    prompt_tokens = 0
    for index, item in enumerate(items):
        vector = embedding_vector(model, item, dim)
        prompt_tokens += estimate_tokens(len(item)) if isinstance(item, str) else len(item)
        encoded: Any = vector
        if encoding == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    reply = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return Answer(request_hash(model, raw, params), reply, prompt_tokens, 0)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``."""
    return await handle_model_call(request, OPENAI, answer_chat)


async def embeddings(request: web.Request) -> web.StreamResponse:
    """``POST /v1/embeddings``."""
    return await handle_model_call(request, OPENAI, answer_embeddings)


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: OpenAI's list shape, or Anthropic's when ``anthropic-version`` is sent."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    models = [_model_object(request, model) for model in state.config.models]
    if _is_anthropic(request):
        return json_response(
            {
                "data": models,
                "has_more": False,
                "first_id": models[0]["id"] if models else None,
                "last_id": models[-1]["id"] if models else None,
            }
        )
    return json_response({"object": "list", "data": models})


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``: 404 for a model the simulator does not list."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    model = request.match_info["model"]
    if model not in state.config.models:
        return OPENAI.not_found(f"The model '{model}' does not exist")
    return json_response(_model_object(request, model))


def _is_anthropic(request: web.Request) -> bool:
    return "anthropic-version" in request.headers


def _model_object(request: web.Request, model: str) -> dict[str, Any]:
    if _is_anthropic(request):
        return {"type": "model", "id": model, "display_name": model, "created_at": "2024-01-01T00:00:00Z"}
    return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "datamill-simulator"}


def add_routes(app: web.Application) -> None:
    """Register this module's endpoints on ``app``."""
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
