"""Generators: operators whose output column is model-written text."""

from __future__ import annotations

from typing import Any

from datamill.operators.base import LLMOperator, Outcome, Row, require
from datamill.serving.base import LLMServingABC
from datamill.serving.types import GenericRequest, GenericResponse


class PromptedGenerator(LLMOperator):
    """One model call per row: ``system_prompt`` as the system message, and ``user_prompt``
    followed by the row's ``input_key`` value as the user message. The reply text goes to
    ``output_key``.
    """

    def __init__(self, llm_serving: LLMServingABC, system_prompt: str = "", user_prompt: str = "") -> None:
        self.llm_serving = llm_serving
        self.system_prompt = system_prompt
        self.user_prompt = user_prompt

    def run(  # type: ignore[override]
        self, storage: Any, input_key: str = "raw_content", output_key: str = "generated_content"
    ) -> None:
        super().run(storage, input_key=input_key, output_key=output_key)

    def build_requests(self, row: Row, call: dict[str, Any]) -> list[GenericRequest]:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.user_prompt + str(require(row, call["input_key"]))})
        return [self.llm_serving.build_request(messages)]

    def apply_responses(self, row: Row, responses: list[GenericResponse], call: dict[str, Any]) -> Outcome:
        out = dict(row)
        out[call["output_key"]] = responses[0].text
        return out
