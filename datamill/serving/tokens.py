"""Prompt-token estimates, before a request is sent (for TPM pacing and ``pipeline.estimate()``).

tiktoken is used where it knows the model *and* its encoding file is available (in tiktoken's
cache, ``TIKTOKEN_CACHE_DIR``); tiktoken downloads encodings on first use, so an offline machine
falls back — once per model, remembered — to the heuristic ``ceil(chars / 4) + 4`` per message
plus 3 for the reply's priming. Estimates only pace and forecast: costs always come from the
provider's ``usage``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 4
REPLY_PRIMING_TOKENS = 3

_encoders: dict[str, Callable[[str], int] | None] = {}


def heuristic_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: about right for English under modern BPE vocabularies."""
    return (len(text) + 3) // 4


def text_of(content: Any) -> str:
    """The text in a message's content: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    if content is None:
        return ""
    return json.dumps(content, ensure_ascii=False)


def token_counter(model: str) -> Callable[[str], int]:
    """A function counting the tokens of a text for ``model``: tiktoken's, or the heuristic."""
    if model not in _encoders:
        _encoders[model] = _load_tiktoken(model)
    return _encoders[model] or heuristic_tokens


def estimate_prompt_tokens(messages: list[dict[str, Any]], model: str, extra_text: str = "") -> int:
    """Prompt tokens of a chat request: each message's text plus per-message overhead."""
    count = token_counter(model)
    total = REPLY_PRIMING_TOKENS + (count(extra_text) if extra_text else 0)
    for message in messages:
        total += TOKENS_PER_MESSAGE + count(text_of(message.get("content")))
    return total


def _load_tiktoken(model: str) -> Callable[[str], int] | None:
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        encoding = tiktoken.encoding_for_model(model)
    except KeyError:
        return None
    except Exception as exc:  # tiktoken fetches encoding files over the network on first use
        log.debug("tiktoken encoding for %s unavailable (%s); using chars/4", model, type(exc).__name__)
        return None

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count
