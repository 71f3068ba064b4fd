"""Deterministic replies: the contract that lets a test prove each output row is its input's.

The rule, the same for OpenAI chat, Anthropic messages and both batch APIs:

* ``h = request_hash(model, messages, params)`` is the sha256 hex digest of the canonical JSON
  (sorted keys, no spaces, UTF-8) of ``[model, messages, params]``, where ``params`` is every
  other field of the request body except ``stream`` and ``user`` (``EXCLUDED_PARAMS``). For
  Anthropic the top-level ``system`` prompt is one of those params, so it changes ``h``.
* The text of choice ``i`` is ``f"[{model}|{h[:8]}|{i}] {last_user_text}"``, where
  ``last_user_text`` is the last ``user`` message's string content, or the concatenation of
  its text parts. A reply therefore always ends with the user's text.
* Under ``response_format`` ``json_schema`` the content is a JSON instance of the schema whose
  strings are that same text (``schema_instance.py``); under ``json_object`` it is
  ``{"reply": text}``. Anthropic's forced tool use (``tool_choice`` naming a tool) answers a
  ``tool_use`` block whose input is an instance of the tool's ``input_schema`` by the same rule.
* ``invalid_reply_rate`` makes that share of structured replies invalid, chosen by ``h``
  (``is_invalid_reply``), so a retry with a different salt may be valid: the content is then the
  plain text (OpenAI), or a text block without the forced ``tool_use`` (Anthropic).
* Tokens are estimated as ``ceil(chars / 4)`` of the prompt's text and of each reply.

The accounting (distinct and duplicate requests) keys on the same ``h``; a batch line's reply
equals the online reply to the same body because both come from ``answer_*`` helpers here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from datamill.simulator.schema_instance import generate_instance

EXCLUDED_PARAMS = frozenset({"stream", "user"})

_dumps_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


class InvalidRequest(ValueError):
    """The request body cannot be answered (missing model or messages, bad types): HTTP 400."""


def request_hash(model: str, messages: Any, params: Mapping[str, Any]) -> str:
    """Return the sha256 hex digest identifying a model call (see the module docstring)."""
    kept = {k: v for k, v in params.items() if k not in EXCLUDED_PARAMS}
    return hashlib.sha256(_dumps_canonical([model, messages, kept]).encode()).hexdigest()


def body_hash(body: Mapping[str, Any]) -> str:
    """``request_hash`` of a whole request body (``model`` and ``messages`` taken out of it)."""
    params = {k: v for k, v in body.items() if k != "model" and k != "messages"}
    return request_hash(body.get("model"), body.get("messages"), params)


def text_of(content: Any) -> str:
    """The text of a message's content: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(messages: list[Any]) -> str:
    """The text of the last message whose role is ``user`` ("" when there is none)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def reply_text(model: str, h: str, index: int, user_text: str) -> str:
    """The reply text of choice ``index``: ``[model|h[:8]|index] user_text``."""
    return f"[{model}|{h[:8]}|{index}] {user_text}"


def estimate_tokens(chars: int) -> int:
    """``ceil(chars / 4)``: the simulator's stand-in for a tokenizer."""
    return (chars + 3) // 4


def prompt_chars(messages: list[Any], system: Any = None) -> int:
    """Characters of text in the prompt: every message's text, plus an Anthropic ``system``."""
    total = len(text_of(system)) if system is not None else 0
    for message in messages:
        if isinstance(message, dict):
            total += len(text_of(message.get("content")))
    return total


def check_messages_body(body: Any) -> None:
    """Raise ``InvalidRequest`` unless ``body`` has a string ``model`` and a non-empty ``messages`` list."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array")


def is_invalid_reply(h: str, index: int, rate: float) -> bool:
    """Whether structured choice ``index`` of request ``h`` breaks its schema under ``rate``."""
    if rate <= 0.0:
        return False
    draw = int(hashlib.sha256(f"invalid:{h}:{index}".encode()).hexdigest()[:8], 16) / 2**32
    return draw < rate


def schema_reply(schema: Any, text: str, seed: str) -> Any:
    """A JSON instance of ``schema`` whose strings are ``text`` (400 for a schema that is not
    an object)."""
    if not isinstance(schema, dict):
        raise InvalidRequest("the JSON schema must be an object")
    return generate_instance(schema, text=text, seed=seed)


def choice_content(
    model: str, h: str, index: int, user_text: str, response_format: Any, invalid_rate: float = 0.0
) -> str:
    """The content string of choice ``index``, honouring ``response_format`` (text, json_object,
    json_schema); a structured choice picked by ``invalid_rate`` is the plain text instead."""
    text = reply_text(model, h, index, user_text)
    if isinstance(response_format, dict) and is_invalid_reply(h, index, invalid_rate):
        return text
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise InvalidRequest("response_format.json_schema.schema must be an object")
            return json.dumps(schema_reply(schema, text, f"{h}:{index}"), ensure_ascii=False)
        if kind == "json_object":
            return json.dumps({"reply": text}, ensure_ascii=False)
    return text


def embedding_vector(model: str, item: Any, dim: int) -> list[float]:
    """A unit-length vector of ``dim`` floats derived from sha256 of the model and input."""
    key = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
    seed = hashlib.sha256(f"{model}\x00{key}".encode()).digest()
    raw: list[float] = []
    block = 0
    while len(raw) < dim:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        raw.extend(b / 127.5 - 1.0 for b in digest)
        block += 1
    vector = raw[:dim]
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in vector]
