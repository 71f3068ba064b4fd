"""``TextGeneration``: distilabel's prompt-to-text task, run by a datamill operator.

The step keeps distilabel's settings (``llm``, ``system_prompt``, ``template``, ``columns``,
``num_generations``, ``group_generations``, ``input_batch_size``, mappings); at run time it
becomes a ``TextGenerationOperator`` over the LLM's datamill serving, which the engine batches,
caches and commits like any other operator.

The prompt is ``template`` (Jinja2, ``{{ instruction }}`` by default) rendered from ``columns``;
the system message is the row's ``system_prompt`` column when it has one, else
``system_prompt``. Each row gains ``generation`` and ``model_name`` (renamed by
``output_mappings``); ``input_mappings`` say which row column feeds each of ``columns``. With
``num_generations=k``, ``group_generations=False`` gives k rows (one generation each) and
``True`` one row whose columns are lists, as in distilabel.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from datamill.distilabel.base import Step
from datamill.distilabel.llms import LLM
from datamill.errors import ConfigError
from datamill.operators.base import Row, require
from datamill.operators.generate import SamplingGenerator, with_system

if TYPE_CHECKING:
    from datamill.distilabel.pipeline import Pipeline

DEFAULT_TEMPLATE = "{{ instruction }}"
_SINGLE_FIELD = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


class TextGeneration(Step):
    """Generate text from a prompt built from each row; writes ``generation`` and ``model_name``."""

    RUNTIME_PARAMETERS = ("input_batch_size", "llm", "num_generations")

    def __init__(
        self,
        *,
        llm: LLM,
        system_prompt: str | None = None,
        template: str = DEFAULT_TEMPLATE,
        columns: str | list[str] = "instruction",
        num_generations: int = 1,
        group_generations: bool = False,
        input_batch_size: int = 50,
        name: str | None = None,
        input_mappings: dict[str, str] | None = None,
        output_mappings: dict[str, str] | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        if not isinstance(llm, LLM):
            raise ConfigError(
                f"TextGeneration(llm=...) takes OpenAILLM or AnthropicLLM, got {type(llm).__name__}"
            )
        super().__init__(
            name=name, input_mappings=input_mappings, output_mappings=output_mappings, pipeline=pipeline
        )
        self.llm = llm
        self.system_prompt = system_prompt
        self.template = template
        self.columns = [columns] if isinstance(columns, str) else list(columns)
        self.num_generations = num_generations
        self.group_generations = group_generations
        self.input_batch_size = input_batch_size
        check_template(template, self.columns, self.name)

    def set_runtime_parameters(self, values: dict[str, Any]) -> None:
        values = dict(values)
        llm_values = values.pop("llm", None)
        super().set_runtime_parameters(values)
        if llm_values is not None:
            if not isinstance(llm_values, dict):
                raise ConfigError(
                    f"step {self.name!r}: parameters 'llm' must be a dict of the LLM's parameters"
                )
            self.llm.set_runtime_parameters(llm_values)

    def to_operator(self, serving: Any) -> TextGenerationOperator:
        """The datamill operator running this step over ``serving`` (the LLM's serving)."""
        return TextGenerationOperator(
            serving,
            system_prompt=self.system_prompt,
            template=self.template,
            columns=[self.mapped_input(column) for column in self.columns],
            template_columns=list(self.columns),
            system_prompt_column=self.mapped_input("system_prompt"),
            generation_column=self.mapped_output("generation"),
            model_name_column=self.mapped_output("model_name"),
            model_name=self.llm.model_name,
            n=self.num_generations,
            n_mode="list" if self.group_generations else "rows",
        )


class TextGenerationOperator(SamplingGenerator):
    """The datamill operator behind ``TextGeneration``: reads ``columns``, writes two columns.

    ``columns`` are the row columns read; ``template_columns`` the names the template uses
    for them (they differ under ``input_mappings``).
    """

    def __init__(
        self,
        llm_serving: Any,
        *,
        system_prompt: str | None,
        template: str,
        columns: list[str],
        template_columns: list[str],
        system_prompt_column: str,
        generation_column: str,
        model_name_column: str,
        model_name: str,
        n: int,
        n_mode: str,
    ) -> None:
        super().__init__(llm_serving, n=n, n_mode=n_mode)
        self.system_prompt = system_prompt
        self.template = template
        self.columns = columns
        self.template_columns = template_columns
        self.system_prompt_column = system_prompt_column
        self.generation_column = generation_column
        self.model_name_column = model_name_column
        self.model_name = model_name
        self._render = compile_template(template)

    def input_keys(self, call: dict[str, Any]) -> list[str]:
        return list(self.columns)

    def output_keys(self, call: dict[str, Any]) -> list[str]:
        return [self.generation_column, self.model_name_column]

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        fields = {
            name: require(row, column)
            for name, column in zip(self.template_columns, self.columns, strict=True)
        }
        system = row.get(self.system_prompt_column) or self.system_prompt or ""
        return with_system(str(system), [{"role": "user", "content": self._render(fields)}])

    def parse_text(self, text: str, call: dict[str, Any]) -> dict[str, Any]:
        return {self.generation_column: text, self.model_name_column: self.model_name}


def check_template(template: str, columns: list[str], step: str) -> None:
    """Every column must appear in the template (as distilabel checks when a step loads)."""
    missing = [
        column for column in columns if not re.search(r"\{\{[^}]*\b" + re.escape(column) + r"\b", template)
    ]
    if missing:
        raise ConfigError(f"step {step!r}: columns {missing} do not appear in the template {template!r}")


def compile_template(template: str) -> Any:
    """A function rendering ``template`` from a dict; Jinja2 unless it is one bare field."""
    single = _SINGLE_FIELD.match(template)
    if single:
        name = single.group(1)
        return lambda fields: str(fields[name])
    try:
        import jinja2
    except ImportError:
        raise ConfigError(
            "a TextGeneration template needs Jinja2: pip install 'datamill[distilabel]'"
        ) from None
    try:
        compiled = jinja2.Template(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"the template {template!r} is not valid Jinja2: {exc}") from None
    return lambda fields: compiled.render(**fields)
