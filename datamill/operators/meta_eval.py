"""``MetaSampleEvaluator``: a model scores each row on named quality dimensions, one column each.

DataFlow's name and signature (``MetaSampleEvaluator(llm_serving, dimensions=...)``,
``run(storage, input_key)``), so pipelines ported from DataFlow run unchanged. A dimension is
``{"dimension_name", "description", "example_list": [{"text", "score"}, ...]}``; the default six
are text structure, diversity and complexity, fluency, safety, educational value and accuracy,
and their names are the output columns.

One call per row asks for a JSON object with an integer score per dimension (constrained by
``response_format`` unless ``use_response_format=False``). The reply is read leniently: that
object (keys matched ignoring case, spaces and punctuation; values may be numeric strings or
``{"score": n}``), a list of as many numbers as dimensions (the last line holding one, as
DataFlow's prompt asks), or ``Name: score`` lines. A reply missing a dimension or scoring outside
``min_score..max_score`` is an ``InvalidResponseError``: it is asked again, and the row fails
(retried on resume) rather than being written with blank scores.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from datamill.errors import ConfigError, InvalidResponseError
from datamill.operators.base import Operator, Row, require
from datamill.operators.generate import SamplingGenerator, with_system
from datamill.serving.base import LLMServingABC
from datamill.serving.structured import parse_json_object, response_format_for

DEFAULT_DIMENSIONS: list[dict[str, Any]] = [
    {
        "dimension_name": "Text Structure",
        "description": "Spelling, grammar, word choice and how well the sentences are built.",
        "example_list": [
            {
                "text": "Each measurement was logged twice, and every outlier is explained in a footnote.",
                "score": "5",
            },
            {"text": "we done the test but it dont work good and nobody know why", "score": "2"},
        ],
    },
    {
        "dimension_name": "Diversity and Complexity",
        "description": "How varied and deep the ideas are, and how much expertise or reasoning they call for.",
        "example_list": [
            {
                "text": "The essay weighs lock-free queues against sharded locks under skewed write loads.",
                "score": "5",
            },
            {"text": "Cats sleep a lot. They like milk. They are soft.", "score": "2"},
        ],
    },
    {
        "dimension_name": "Fluency and Understandability",
        "description": "Whether the text reads naturally and is easy to follow, without awkward jumps.",
        "example_list": [
            {
                "text": "After two failed attempts, the crew rerouted the cable and the station came back online.",
                "score": "5",
            },
            {"text": "Station cable then rerouted was attempts failed online maybe came.", "score": "1"},
        ],
    },
    {
        "dimension_name": "Safety",
        "description": "Absence of insults, hate, threats and needless personal information about people.",
        "example_list": [
            {"text": "The app stores settings locally and never uploads your contacts.", "score": "5"},
            {
                "text": "Here is my neighbour's phone number and home address, go and yell at him.",
                "score": "1",
            },
        ],
    },
    {
        "dimension_name": "Educational Value",
        "description": "How much a reader learns from the text or is led to think.",
        "example_list": [
            {
                "text": "Ice floats because water expands as it freezes, which keeps lakes liquid underneath.",
                "score": "5",
            },
            {"text": "Things are the way they are. That is just how it goes.", "score": "1"},
        ],
    },
    {
        "dimension_name": "Content Accuracy and Effectiveness",
        "description": "Whether the content is true, on topic and useful for its purpose.",
        "example_list": [
            {"text": "Light from the Sun takes about eight minutes to reach the Earth.", "score": "5"},
            {"text": "The Moon is a hole in the sky through which heaven's light shines.", "score": "1"},
        ],
    },
]

_LIST_LINE = re.compile(r"\[[^\[\]]*\]")
_NAME_SCORE = re.compile(r"^\W*(.+?)\W*[:=\-]\s*\**\s*(-?\d+(?:\.\d+)?)", re.MULTILINE)


def normalise_name(name: str) -> str:
    """A dimension name compared ignoring case, spaces and punctuation ("&" reads as "and")."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("&", "and"))


def check_dimensions(dimensions: Any) -> list[dict[str, Any]]:
    """The dimensions as given, or a ``ConfigError`` naming the first malformed entry."""
    if not isinstance(dimensions, list) or not dimensions:
        raise ConfigError(
            "dimensions must be a non-empty list of {dimension_name, description, example_list}"
        )
    seen: set[str] = set()
    for index, item in enumerate(dimensions):
        if not isinstance(item, dict) or not {"dimension_name", "description", "example_list"} <= set(item):
            shown = repr(item)[:200]
            raise ConfigError(
                f"dimensions[{index}] needs 'dimension_name', 'description' and 'example_list', got {shown}"
            )
        for example in item["example_list"]:
            if not isinstance(example, dict) or not {"text", "score"} <= set(example):
                raise ConfigError(
                    f"dimensions[{index}].example_list entries need 'text' and 'score', got {example!r}"
                )
        key = normalise_name(str(item["dimension_name"]))
        if not key or key in seen:
            raise ConfigError(
                f"dimensions[{index}]: dimension_name {item['dimension_name']!r} is empty or repeated"
            )
        seen.add(key)
    return dimensions


def as_score(value: Any) -> float | int | None:
    """A number from a reply value (number, numeric string, or ``{"score": n}``); None if not one."""
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if float(value).is_integer() else float(value)


class MetaSampleEvaluator(SamplingGenerator):
    """Score each row's ``input_key`` text on every dimension; one column per ``dimension_name``."""

    def __init__(
        self,
        llm_serving: LLMServingABC | None = None,
        dimensions: list[dict[str, Any]] | None = None,
        *,
        min_score: int = 1,
        max_score: int = 5,
        use_response_format: bool = True,
    ) -> None:
        if llm_serving is None:
            raise ConfigError("MetaSampleEvaluator needs llm_serving: the model that scores each row")
        super().__init__(llm_serving)
        if min_score >= max_score:
            raise ConfigError(f"min_score ({min_score}) must be below max_score ({max_score})")
        self.dimensions = check_dimensions(DEFAULT_DIMENSIONS if dimensions is None else dimensions)
        self.min_score = min_score
        self.max_score = max_score
        self.use_response_format = use_response_format
        self._names = [str(item["dimension_name"]) for item in self.dimensions]
        self._by_key = {normalise_name(name): name for name in self._names}
        self._system_prompt = self.system_prompt()
        self._params = self.response_format_params() if use_response_format else {}

    def run(self, storage: Any, input_key: str) -> None:  # type: ignore[override]
        Operator.run(self, storage, input_key=input_key)

    def output_keys(self, call: dict[str, Any]) -> list[str]:
        return list(self._names)

    def system_prompt(self) -> str:
        parts = [
            "You rate the quality of the text the user sends on each dimension below, with an integer "
            f"from {self.min_score} (worst) to {self.max_score} (best).\n"
        ]
        for item in self.dimensions:
            parts.append(f"## {item['dimension_name']}\n{item['description']}")
            for example in item["example_list"]:
                parts.append(f"Example (score {example['score']}): {example['text']}")
            parts.append("")
        keys = ", ".join(json.dumps(name) for name in self._names)
        parts.append(f"Reply with only a JSON object whose keys are {keys} and whose values are the scores.")
        return "\n".join(parts)

    def request_params(self) -> dict[str, Any]:
        return self._params

    def response_format_params(self) -> dict[str, Any]:
        score = {"type": "integer", "minimum": self.min_score, "maximum": self.max_score}
        schema = {
            "type": "object",
            "properties": dict.fromkeys(self._names, score),
            "required": list(self._names),
            "additionalProperties": False,
        }
        return {"response_format": response_format_for(schema, "scores", strict=True)}

    def build_messages(self, row: Row, call: dict[str, Any]) -> list[dict[str, Any]]:
        text = str(require(row, call["input_key"]))
        return with_system(self._system_prompt, [{"role": "user", "content": text}])

    def parse_text(self, text: str, call: dict[str, Any]) -> dict[str, Any]:
        scores = self.scores_from_object(text) or self.scores_from_list(text) or self.scores_from_lines(text)
        if scores is None:
            raise InvalidResponseError(
                f"no score for every dimension {self._names} in the reply: {text[:200]!r}"
            )
        for name, value in scores.items():
            if not self.min_score <= value <= self.max_score:
                raise InvalidResponseError(
                    f"{name} score {value} is outside {self.min_score}..{self.max_score}"
                )
        return scores

    def scores_from_object(self, text: str) -> dict[str, Any] | None:
        try:
            data = parse_json_object(text)
        except InvalidResponseError:
            return None
        if isinstance(data.get("scores"), (dict, list)):
            data = data["scores"]
        if isinstance(data, list):
            return self.scores_in_order(data)
        found = {self._by_key.get(normalise_name(str(key))): as_score(value) for key, value in data.items()}
        return self.complete(found)

    def scores_from_list(self, text: str) -> dict[str, Any] | None:
        for candidate in reversed(_LIST_LINE.findall(text)):
            try:
                values = ast.literal_eval(candidate)
            except (ValueError, SyntaxError):
                continue
            if isinstance(values, (list, tuple)):
                scores = self.scores_in_order(list(values))
                if scores is not None:
                    return scores
        return None

    def scores_from_lines(self, text: str) -> dict[str, Any] | None:
        found = {
            self._by_key.get(normalise_name(name)): as_score(value)
            for name, value in _NAME_SCORE.findall(text)
        }
        return self.complete(found)

    def scores_in_order(self, values: list[Any]) -> dict[str, Any] | None:
        if len(values) != len(self._names):
            return None
        return self.complete({name: as_score(value) for name, value in zip(self._names, values, strict=True)})

    def complete(self, found: dict[str | None, Any]) -> dict[str, Any] | None:
        """The scores when every dimension has a number, else None."""
        if any(found.get(name) is None for name in self._names):
            return None
        return {name: found[name] for name in self._names}
