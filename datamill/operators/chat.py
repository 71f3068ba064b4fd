"""``ChatGenerator``: continue a conversation held in a column of the row."""

from __future__ import annotations

import json
from typing import Any

from datamill.operators.base import MissingInputError, Row, require
from datamill.operators.generate import SamplingGenerator, with_system
from datamill.serving.base import LLMServingABC

ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})


def check_messages(value: Any) -> list[dict[str, Any]]:
    """The conversation of one row as chat messages; a malformed one fails that row.

    A column read from CSV holds the list as a JSON string, which is decoded here.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise MissingInputError("messages column holds a string that is not a JSON list") from None
    if not isinstance(value, list) or not value:
        raise MissingInputError("messages must be a non-empty list of {role, content} objects")
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES or "content" not in message:
            raise MissingInputError(
                f"message {index} must be an object with a role in {sorted(ROLES)} and a content, got {message!r}"
            )
    return value


class ChatGenerator(SamplingGenerator):
    """One model call per row, sending the row's ``input_key`` column (a list of
    ``{"role", "content"}`` messages) as the conversation; ``system_prompt``, when given, is
    put before it. The reply (the next assistant turn) goes to ``output_key``.
    """

    def __init__(
        self, llm_serving: LLMServingABC, system_prompt: str = "", *, n: int = 1, n_mode: str = "list"
    ) -> None:
        super().__init__(llm_serving, n=n, n_mode=n_mode)
        self.system_prompt = system_prompt

    def run(self, storage: Any, input_key: str = "messages", output_key: str = "response") -> None:  # type: ignore[override]
        super().run(storage, input_key=input_key, output_key=output_key)

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        return with_system(self.system_prompt, check_messages(require(row, call["input_key"])))
