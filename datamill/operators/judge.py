"""``LLMScorer``: a model grades each row on criteria, writing a numeric score and a rationale."""

from __future__ import annotations

import re
from typing import Any

from datamill.errors import ConfigError, InvalidResponseError
from datamill.operators.base import Row, require
from datamill.operators.generate import SamplingGenerator, with_system
from datamill.serving.structured import parse_json_object, response_format_for

_SCORE_IN_TEXT = re.compile(r"""["']?score["']?\s*[:=]\s*["']?(-?\d+(?:\.\d+)?)""", re.IGNORECASE)

SYSTEM_PROMPT = (
    "You are a careful, strict evaluator. Rate the text you are given against these criteria:\n"
    "{criteria}\n"
    "Give an integer score from {min_score} (worst) to {max_score} (best). Reply with only a JSON "
    'object: {{"rationale": "<one or two sentences>", "score": <integer>}}.'
)


def score_from(data: dict[str, Any]) -> float | int:
    """The ``score`` field as a number (a numeric string is accepted); integral floats become ints."""
    value = data.get("score")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidResponseError(f"score {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidResponseError(f"the reply has no numeric score: {data!r}"[:300])
    return int(value) if float(value).is_integer() else float(value)


def parse_score_reply(text: str) -> dict[str, Any]:
    """``{"score", "rationale"}`` from a judge's reply: JSON first, then ``score: N`` in prose."""
    try:
        data = parse_json_object(text)
    except InvalidResponseError:
        match = _SCORE_IN_TEXT.search(text)
        if match is None:
            raise
        data = {"score": match.group(1), "rationale": text.strip()}
    return {"score": score_from(data), "rationale": str(data.get("rationale") or "")}


class LLMScorer(SamplingGenerator):
    """One model call per row asking for a score from ``min_score`` to ``max_score`` on
    ``criteria``, with a short rationale.

    The request asks for JSON ``{"rationale", "score"}`` (via ``response_format`` unless
    ``use_response_format=False``, for endpoints without structured outputs); the reply is
    parsed leniently (code fences, surrounding prose, ``score: 7``), and a reply without a
    score in range raises ``InvalidResponseError``, failing the row. The score goes to
    ``score_key`` and the rationale to ``rationale_key``. ``input_key`` may be a list of
    columns, shown to the judge as ``column: value`` paragraphs.
    """

    def __init__(
        self,
        llm_serving: Any,
        criteria: str,
        *,
        score_key: str = "score",
        rationale_key: str = "rationale",
        min_score: int = 1,
        max_score: int = 10,
        system_prompt: str | None = None,
        use_response_format: bool = True,
    ) -> None:
        super().__init__(llm_serving)
        if min_score >= max_score:
            raise ConfigError(f"min_score ({min_score}) must be below max_score ({max_score})")
        if score_key == rationale_key:
            raise ConfigError("score_key and rationale_key must differ")
        self.criteria = criteria
        self.score_key = score_key
        self.rationale_key = rationale_key
        self.min_score = min_score
        self.max_score = max_score
        self.system_prompt = (system_prompt or SYSTEM_PROMPT).format(
            criteria=criteria, min_score=min_score, max_score=max_score
        )
        self.use_response_format = use_response_format

    def run(self, storage: Any, input_key: str | list[str] = "generated_content") -> None:  # type: ignore[override]
        if self.use_response_format:
            self.llm_serving.require_structured_output(
                "json_schema", "LLMScorer", "Pass use_response_format=False to parse scores from free text."
            )
        super().run(storage, input_key=input_key)

    def output_keys(self, call: dict[str, Any]) -> list[str]:
        return [self.score_key, self.rationale_key]

    def request_params(self) -> dict[str, Any]:
        if not self.use_response_format:
            return {}
        schema = {
            "type": "object",
            "properties": {
                "rationale": {"type": "string"},
                "score": {"type": "integer", "minimum": self.min_score, "maximum": self.max_score},
            },
            "required": ["rationale", "score"],
            "additionalProperties": False,
        }
        return {"response_format": response_format_for(schema, "score", strict=True)}

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        keys = self.input_keys(call)
        if isinstance(call["input_key"], str):
            text = str(require(row, call["input_key"]))
        else:
            text = "\n\n".join(f"{key}: {require(row, key)}" for key in keys)
        return with_system(self.system_prompt, [{"role": "user", "content": text}])

    def parse_text(self, text: str, call: dict[str, Any]) -> dict[str, Any]:
        reply = parse_score_reply(text)
        if not self.min_score <= reply["score"] <= self.max_score:
            raise InvalidResponseError(
                f"score {reply['score']} is outside {self.min_score}..{self.max_score}"
            )
        return {self.score_key: reply["score"], self.rationale_key: reply["rationale"]}
