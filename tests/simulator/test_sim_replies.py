"""The determinism contract of replies.py and the JSON-schema instances of schema_instance.py."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import pydantic
import pytest
from simulator_helpers import validate

from datamill.simulator.replies import (
    embedding_vector,
    estimate_tokens,
    last_user_text,
    reply_text,
    request_hash,
)
from datamill.simulator.schema_instance import generate_instance

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


def test_request_hash_is_sha256_of_canonical_json_of_model_messages_and_params() -> None:
    params = {"temperature": 0.5, "max_tokens": 10}
    canonical = json.dumps(["m", MESSAGES, params], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert request_hash("m", MESSAGES, params) == hashlib.sha256(canonical.encode()).hexdigest()


def test_request_hash_ignores_stream_and_user_and_key_order_but_not_generation_params() -> None:
    base = request_hash("m", MESSAGES, {"temperature": 0.5, "seed": 1})
    assert request_hash("m", MESSAGES, {"seed": 1, "temperature": 0.5, "user": "u", "stream": False}) == base
    assert request_hash("m", MESSAGES, {"temperature": 0.6, "seed": 1}) != base
    assert request_hash("other", MESSAGES, {"temperature": 0.5, "seed": 1}) != base
    other_system = [{"role": "system", "content": "Be long."}, MESSAGES[1]]
    assert request_hash("m", other_system, {"temperature": 0.5, "seed": 1}) != base


def test_last_user_text_takes_the_last_user_message_and_joins_text_parts() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        },
        {"role": "assistant", "content": "later"},
    ]
    assert last_user_text(messages) == "ab"
    assert last_user_text([{"role": "system", "content": "x"}]) == ""


def test_reply_text_names_model_hash_and_choice_and_ends_with_the_user_text() -> None:
    h = "0123456789abcdef" * 4
    assert reply_text("gpt", h, 2, "question?") == "[gpt|01234567|2] question?"


def test_estimate_tokens_is_ceil_of_a_quarter_of_the_characters() -> None:
    assert [estimate_tokens(n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]


def test_embedding_vectors_are_deterministic_unit_length_and_input_specific() -> None:
    first = embedding_vector("e", "text", 16)
    assert first == embedding_vector("e", "text", 16)
    assert len(first) == 16
    assert abs(sum(v * v for v in first) - 1.0) < 1e-4
    assert first != embedding_vector("e", "other", 16)
    assert len(embedding_vector("e", "text", 100)) == 100


SCHEMAS = {
    "flat": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18, "maximum": 30},
            "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "ok": {"type": "boolean"},
            "tag": {"enum": ["a", "b", "c"]},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "nested_arrays": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "q": {"type": "string", "maxLength": 5},
                        "n": {"type": "integer", "multipleOf": 7},
                    },
                    "required": ["q", "n"],
                },
            },
            "unique": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "maxItems": 2,
            },
        },
        "required": ["items", "unique", "pair"],
    },
    "unions_and_refs": {
        "$defs": {
            "Leaf": {"type": "object", "properties": {"v": {"type": ["string", "null"], "minLength": 40}}}
        },
        "type": "object",
        "properties": {
            "maybe": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Leaf"}]},
            "one": {
                "oneOf": [{"type": "integer", "minimum": 5, "maximum": 5}, {"type": "string", "maxLength": 0}]
            },
            "both": {
                "allOf": [{"properties": {"x": {"type": "integer"}}, "required": ["x"]}, {"type": "object"}]
            },
            "fixed": {"const": "k"},
            "negative": {"type": "number", "maximum": -10},
        },
        "required": ["maybe", "one", "both", "fixed", "negative"],
    },
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_generated_instances_validate_against_their_schema(name: str) -> None:
    schema = SCHEMAS[name]
    for seed in ("s1", "s2", "s3"):
        instance = generate_instance(schema, text="[m|h|0] the text", seed=seed)
        assert validate(instance, schema) == [], instance


def test_generated_instances_include_every_property_and_carry_the_reply_text() -> None:
    instance = generate_instance(SCHEMAS["flat"], text="[m|h|0] the text", seed="x")
    assert set(instance) == {"name", "age", "score", "ok", "tag"}
    assert instance["name"] == "[m|h|0] the text"


def test_generated_instances_are_deterministic_per_seed() -> None:
    schema = SCHEMAS["nested_arrays"]
    assert generate_instance(schema, text="t", seed="a") == generate_instance(schema, text="t", seed="a")
    values = {json.dumps(generate_instance(SCHEMAS["flat"], text="t", seed=str(i))) for i in range(20)}
    assert len(values) > 1


class Answer(pydantic.BaseModel):
    """A pydantic model: its schema uses $defs, $ref and anyOf-with-null, as datamill's will."""

    class Step(pydantic.BaseModel):
        text: str
        weight: float = pydantic.Field(ge=0, le=1)

    title: str
    kind: Literal["short", "long"]
    steps: list[Step]
    note: str | None = None
    count: int = pydantic.Field(gt=0, lt=10)


def test_instances_of_a_pydantic_schema_parse_back_into_the_model() -> None:
    instance = generate_instance(Answer.model_json_schema(), text="[m|h|0] why", seed="s")
    parsed = Answer.model_validate(instance)
    assert parsed.title == "[m|h|0] why"
    assert parsed.steps and parsed.steps[0].text == "[m|h|0] why"
