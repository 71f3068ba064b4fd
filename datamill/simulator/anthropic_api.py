"""Anthropic's Messages API: ``POST /v1/messages`` and token counting.

Same reply rule as OpenAI (``replies.py``); the top-level ``system`` prompt is a param, so it
changes the request hash and therefore the reply.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from datamill.simulator.online import Answer, check_api_key, handle_model_call
from datamill.simulator.replies import (
    InvalidRequest,
    check_messages_body,
    estimate_tokens,
    last_user_text,
    prompt_chars,
    reply_text,
    request_hash,
)
from datamill.simulator.state import STATE_KEY, SimulatorState
from datamill.simulator.wire import ANTHROPIC, json_response


def answer_message(body: Any, state: SimulatorState) -> Answer:
    """The Messages API reply for ``body``."""
    check_messages_body(body)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required (a positive integer)")
    if body.get("stream"):
        raise InvalidRequest("stream=true is not supported by the datamill simulator")
    model = body["model"]
    messages = body["messages"]
    params = {k: v for k, v in body.items() if k != "model" and k != "messages"}
    h = request_hash(model, messages, params)
    text = reply_text(model, h, 0, last_user_text(messages))
    input_tokens = estimate_tokens(prompt_chars(messages, body.get("system")))
    output_tokens = estimate_tokens(len(text))
    reply = {
        "id": state.response_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return Answer(h, reply, input_tokens, output_tokens)


async def create_message(request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages``."""
    return await handle_model_call(request, ANTHROPIC, answer_message)


async def count_tokens(request: web.Request) -> web.Response:
    """``POST /v1/messages/count_tokens``: the simulator's chars/4 estimate, free of charge."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, ANTHROPIC)
    if refused is not None:
        return refused
    try:
        body = json.loads(await request.read())
        check_messages_body(body)
    except InvalidRequest as exc:
        return ANTHROPIC.bad_request(str(exc))
    except ValueError:
        return ANTHROPIC.bad_request("The request body is not valid JSON.")
    return json_response(
        {"input_tokens": estimate_tokens(prompt_chars(body["messages"], body.get("system")))}
    )


def add_routes(app: web.Application) -> None:
    """Register this module's endpoints on ``app``."""
    app.router.add_post("/v1/messages", create_message)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
