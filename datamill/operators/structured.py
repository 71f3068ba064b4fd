"""``StructuredGenerator``: replies in a JSON schema, each top-level field a column."""

from __future__ import annotations

import re
from typing import Any

from datamill.errors import ConfigError
from datamill.operators.base import Operator
from datamill.operators.generate import PromptedGenerator
from datamill.serving.base import LLMServingABC
from datamill.serving.structured import check_schema, response_format_for, schema_and_model, validate_reply

_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StructuredGenerator(PromptedGenerator):
    """One model call per row asking for a JSON object in ``json_schema``.

    ``json_schema`` is a JSON schema dict whose top level is an object, or a pydantic model
    class. Requests carry ``response_format`` (``json_schema``; ``strict`` as given); each
    reply is parsed, validated (by the pydantic model when there is one) and its top-level
    fields become columns, so the step's output keys are the schema's properties. A reply that
    is not valid JSON in the schema raises ``InvalidResponseError``, which fails the row.
    The user message is ``user_prompt`` followed by the row's ``input_key`` value.
    """

    def __init__(
        self,
        llm_serving: LLMServingABC,
        system_prompt: str = "",
        json_schema: Any = None,
        user_prompt: str = "",
        *,
        schema_name: str | None = None,
        strict: bool = False,
        n: int = 1,
        n_mode: str = "list",
    ) -> None:
        super().__init__(llm_serving, system_prompt, user_prompt, n=n, n_mode=n_mode)
        schema, model = schema_and_model(json_schema)
        check_schema(schema)
        if not isinstance(schema.get("properties"), dict) or not schema["properties"]:
            raise ConfigError("json_schema must describe an object with properties: they become the columns")
        name = schema_name or (model.__name__ if model is not None else "response")
        if not _SCHEMA_NAME.match(name):
            raise ConfigError(f"schema_name {name!r} must be 1-64 letters, digits, '_' or '-'")
        self.json_schema = schema
        self.schema_name = name
        self.strict = strict
        self.schema_model = f"{model.__module__}.{model.__qualname__}" if model is not None else None
        self._model = model

    def run(self, storage: Any, input_key: str = "raw_content") -> None:  # type: ignore[override]
        self.llm_serving.require_structured_output("json_schema", "StructuredGenerator")
        Operator.run(self, storage, input_key=input_key)

    def output_keys(self, call: dict[str, Any]) -> list[str]:
        return list(self.json_schema["properties"])

    def request_params(self) -> dict[str, Any]:
        return {
            "response_format": response_format_for(self.json_schema, self.schema_name, strict=self.strict)
        }

    def parse_text(self, text: str, call: dict[str, Any]) -> dict[str, Any]:
        data = validate_reply(text, self._model if self._model is not None else self.json_schema)
        return {key: data.get(key) for key in self.json_schema["properties"]}
