"""``PromptTemplateGenerator``: a user prompt filled from several columns of the row."""

from __future__ import annotations

import string
from typing import Any

from datamill.errors import ConfigError
from datamill.operators.base import Row, require
from datamill.operators.generate import SamplingGenerator, with_system
from datamill.serving.base import LLMServingABC


def template_fields(template: str) -> list[str]:
    """The column names a ``str.format`` template refers to, in order of first use.

    Only named fields are allowed (``{text}``, not ``{}`` or ``{0}``); ``{{`` and ``}}`` are
    literal braces. A field such as ``{meta[lang]}`` needs the column ``meta``.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"prompt template {template!r} is not a valid format string: {exc}") from None
    fields: list[str] = []
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        root = field_name.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ConfigError(
                f"prompt template {template!r} has a positional field {{{field_name}}}; "
                "name each field after a column, e.g. {text}"
            )
        if root not in fields:
            fields.append(root)
    return fields


class PromptTemplateGenerator(SamplingGenerator):
    """One model call per row whose user message is ``template`` filled from the row.

    ``template`` is a ``str.format`` string whose fields are column names, e.g.
    ``"Translate {text} into {lang}"``; those columns are the step's input keys, so
    ``compile()`` reports a missing one before anything runs. The reply goes to ``output_key``.
    """

    def __init__(
        self,
        llm_serving: LLMServingABC,
        template: str,
        system_prompt: str = "",
        *,
        n: int = 1,
        n_mode: str = "list",
    ) -> None:
        super().__init__(llm_serving, n=n, n_mode=n_mode)
        self.template = template
        self.system_prompt = system_prompt
        self._fields = template_fields(template)

    def run(self, storage: Any, output_key: str = "generated_content") -> None:  # type: ignore[override]
        super().run(storage, output_key=output_key)

    def input_keys(self, call: dict[str, Any]) -> list[str]:
        return list(self._fields)

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        values = {name: require(row, name) for name in self._fields}
        return with_system(
            self.system_prompt, [{"role": "user", "content": self.template.format_map(values)}]
        )
