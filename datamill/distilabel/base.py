"""The step contract of the distilabel-style front: a named node of a pipeline, joined by ``>>``.

A step is created inside ``with Pipeline() as pipeline:`` (or with ``pipeline=``) and registers
itself there under its ``name`` (``snake_case`` of its class and a counter when not given, as
distilabel names them: ``text_generation_0``). ``a >> b`` adds the edge a → b and returns
``b``; ``a >> [b, c]`` feeds both and returns the list. Runtime parameters
(``pipeline.run(parameters={step.name: {...}})``) may set only the names a step lists in
``RUNTIME_PARAMETERS``; anything else is a ``ConfigError`` before anything runs.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from datamill.errors import ConfigError

if TYPE_CHECKING:
    from datamill.distilabel.pipeline import Pipeline

#: The pipeline whose ``with`` block is open: steps created there join it.
CURRENT_PIPELINE: ContextVar[Pipeline | None] = ContextVar("datamill_distilabel_pipeline", default=None)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def snake_case(name: str) -> str:
    """``TextGeneration`` -> ``text_generation`` (the base of a step's default name)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def check_name(name: str, what: str) -> str:
    """``name`` when it can name files in the cache directory, else a ``ConfigError``."""
    if not _NAME.match(name):
        raise ConfigError(f"{what} name {name!r} must be letters, digits, '_' or '-' (it names cache files)")
    return name


def check_runtime_parameters(values: dict[str, Any], allowed: tuple[str, ...], owner: str) -> None:
    """Refuse runtime parameters ``owner`` does not take, naming the ones it does."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"{owner} has no runtime parameter {unknown}; it takes {list(allowed)}")


class Step:
    """Base of every step of a distilabel-style pipeline."""

    #: The names ``pipeline.run(parameters={name: {...}})`` may set on this step.
    RUNTIME_PARAMETERS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        name: str | None,
        input_mappings: dict[str, str] | None,
        output_mappings: dict[str, str] | None,
        pipeline: Pipeline | None,
    ) -> None:
        owner = pipeline if pipeline is not None else CURRENT_PIPELINE.get()
        if owner is None:
            raise ConfigError(
                f"{type(self).__name__} was created outside a pipeline: create it inside "
                "`with Pipeline(...) as pipeline:` or pass pipeline=pipeline"
            )
        self.pipeline = owner
        self.name = (
            check_name(name, "step") if name else owner.unique_step_name(snake_case(type(self).__name__))
        )
        self.input_mappings = dict(input_mappings or {})
        self.output_mappings = dict(output_mappings or {})
        owner.add_step(self)

    def connect(self, *steps: Step) -> None:
        """Feed this step's output rows to each of ``steps``."""
        for step in steps:
            self.pipeline.add_edge(self, step)

    def __rshift__(self, other: Step | list[Step]) -> Any:
        if isinstance(other, list):
            self.connect(*other)
            return other
        if not isinstance(other, Step):
            return NotImplemented
        self.connect(other)
        return other

    def __rrshift__(self, other: list[Step]) -> Step:
        if not isinstance(other, list):
            return NotImplemented
        for step in other:
            step.connect(self)
        return self

    def set_runtime_parameters(self, values: dict[str, Any]) -> None:
        """Apply ``pipeline.run(parameters={self.name: values})``; unknown names are refused."""
        check_runtime_parameters(
            values, self.RUNTIME_PARAMETERS, f"step {self.name!r} ({type(self).__name__})"
        )
        for key, value in values.items():
            setattr(self, key, value)

    def mapped_input(self, column: str) -> str:
        """The row column this step reads for its input ``column`` (``input_mappings``)."""
        return self.input_mappings.get(column, column)

    def mapped_output(self, column: str) -> str:
        """The row column this step writes for its output ``column`` (``output_mappings``)."""
        return self.output_mappings.get(column, column)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
