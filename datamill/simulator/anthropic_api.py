"""Anthropic's Messages API: ``POST /v1/messages`` and token counting.

Same reply rule as OpenAI (``replies.py``); the top-level ``system`` prompt is a param, so it
changes the request hash and therefore the reply. A request that forces a tool
(``tool_choice: {"type": "tool", "name": ...}``) is answered with one ``tool_use`` block whose
input is an instance of that tool's ``input_schema``: how structured output is asked of Claude.
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
    is_invalid_reply,
    last_user_text,
    prompt_chars,
    reply_text,
    request_hash,
    schema_reply,
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
    tool = forced_tool(body)
    if tool is not None and not is_invalid_reply(h, 0, state.config.invalid_reply_rate):
        value = schema_reply(tool.get("input_schema"), text, f"{h}:0")
        content: list[dict[str, Any]] = [
            {"type": "tool_use", "id": "toolu_" + h[:24], "name": tool["name"], "input": value}
        ]
        output_chars, stop_reason = len(json.dumps(value, ensure_ascii=False)), "tool_use"
    else:
        content, output_chars, stop_reason = [{"type": "text", "text": text}], len(text), "end_turn"
    input_tokens = estimate_tokens(prompt_chars(messages, body.get("system")))
    output_tokens = estimate_tokens(output_chars)
    reply = {
        "id": state.response_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return Answer(h, reply, input_tokens, output_tokens)


def forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool that ``tool_choice: {"type": "tool", "name": ...}`` forces, else None; a forced
    name that is not among ``tools`` (each with ``name`` and ``input_schema``) is a 400."""
    choice = body.get("tool_choice")
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)
    ):
        raise InvalidRequest("tools: each tool needs a name and an input_schema")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return None
    tool = next((t for t in tools or [] if t["name"] == choice.get("name")), None)
    if tool is None:
        raise InvalidRequest(f"tool_choice names tool {choice.get('name')!r}, which is not in tools")
    if not isinstance(tool.get("input_schema"), dict) or tool["input_schema"].get("type") != "object":
        raise InvalidRequest(f"tools.{tool['name']}.input_schema: type must be 'object'")
    return tool


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
