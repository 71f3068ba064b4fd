"""Generators: operators whose output columns are model-written.

``SamplingGenerator`` holds what every generator shares: it asks for ``n`` replies per row
(one request with the parameter ``n``, or ``n`` salted requests where the backend has no
``n``: the serving decides, ``LLMServingABC.build_requests``), turns each returned text into
its output fields with ``parse_text``, and lays out ``n`` samples either as list columns
(``n_mode="list"``) or as ``n`` output rows (``n_mode="rows"``). A subclass writes
``build_messages`` (and ``parse_text`` when a reply is more than plain text).
"""

from __future__ import annotations

from typing import Any

from datamill.errors import ConfigError, InvalidResponseError
from datamill.operators.base import LLMOperator, Outcome, Row, require
from datamill.serving.base import LLMServingABC
from datamill.serving.types import GenericRequest, GenericResponse

N_MODES = ("list", "rows")


def check_sampling(n: int, n_mode: str) -> None:
    """Reject a sample count below 1 or an unknown layout, at construction time."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    if n_mode not in N_MODES:
        raise ConfigError(f"n_mode must be one of {N_MODES}, got {n_mode!r}")


def lay_out_samples(row: Row, samples: list[dict[str, Any]], n_mode: str) -> Outcome:
    """The row's outcome for its parsed samples (one dict of output fields per sample).

    One sample: its fields are added to the row. Several: ``"list"`` makes each field a list
    column (sample order), ``"rows"`` makes one output row per sample.
    """
    if len(samples) == 1:
        return {**row, **samples[0]}
    if n_mode == "rows":
        return [{**row, **sample} for sample in samples]
    return {**row, **{key: [sample[key] for sample in samples] for key in samples[0]}}


class SamplingGenerator(LLMOperator):
    """Base of the generators: one request per row, ``n`` samples, parsed by ``parse_text``."""

    def __init__(self, llm_serving: LLMServingABC, *, n: int = 1, n_mode: str = "list") -> None:
        check_sampling(n, n_mode)
        self.llm_serving = llm_serving
        self.n = n
        self.n_mode = n_mode

    @property
    def validates_replies(self) -> bool:  # type: ignore[override]
        """Only a generator whose ``parse_text`` is its own refuses replies."""
        return type(self).parse_text is not SamplingGenerator.parse_text

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        """The chat messages for one row; raise ``MissingInputError`` if the row lacks input."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_messages()")

    def request_params(self) -> dict[str, Any]:
        """Extra generation parameters of this operator's requests (e.g. ``response_format``)."""
        return {}

    def parse_text(self, text: str, call: dict[str, Any]) -> dict[str, Any]:
        """The output fields of one reply text; raise ``InvalidResponseError`` if unusable."""
        return {call["output_key"]: text}

    def build_requests(self, row: Row, call: dict[str, Any]) -> list[GenericRequest]:
        messages = self.build_messages(row, call)
        return self.llm_serving.build_requests(messages, n=self.n, **self.request_params())

    def apply_responses(self, row: Row, responses: list[GenericResponse], call: dict[str, Any]) -> Outcome:
        texts = [text for response in responses for text in response.texts]
        if len(texts) != self.n:
            raise InvalidResponseError(f"asked for {self.n} samples, the reply has {len(texts)}")
        return lay_out_samples(row, [self.parse_text(text, call) for text in texts], self.n_mode)


def with_system(system_prompt: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` preceded by ``system_prompt`` as a system message, when there is one."""
    if not system_prompt:
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


class PromptedGenerator(SamplingGenerator):
    """One model call per row: ``system_prompt`` as the system message, and ``user_prompt``
    followed by the row's ``input_key`` value as the user message. The reply text goes to
    ``output_key`` (a list of ``n`` texts, or ``n`` rows, when ``n > 1``).
    """

    def __init__(
        self,
        llm_serving: LLMServingABC,
        system_prompt: str = "",
        user_prompt: str = "",
        *,
        n: int = 1,
        n_mode: str = "list",
    ) -> None:
        super().__init__(llm_serving, n=n, n_mode=n_mode)
        self.system_prompt = system_prompt
        self.user_prompt = user_prompt

    def run(  # type: ignore[override]
        self, storage: Any, input_key: str = "raw_content", output_key: str = "generated_content"
    ) -> None:
        super().run(storage, input_key=input_key, output_key=output_key)

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        user = self.user_prompt + str(require(row, call["input_key"]))
        return with_system(self.system_prompt, [{"role": "user", "content": user}])
