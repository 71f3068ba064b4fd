"""Structured output, the serving side: asking for a JSON schema and checking replies against it.

``response_format_for`` builds the ``response_format`` request parameter from a JSON schema or
a pydantic model; ``validate_reply`` turns a reply text into the validated object or raises
``InvalidResponseError`` with the reason (the engine then retries the row with a salted
request, up to the operator's ``invalid_reply_retries``, and fails the row after that).

Models asked for JSON still wrap it in code fences or a sentence now and then, so
``parse_json_object`` looks for the object inside the text. Dict schemas are checked by the
``jsonschema`` package (the validator of the schema's ``$schema`` draft, 2020-12 by default;
one validator per distinct schema, built once), pydantic models by pydantic. Validation is a
few microseconds per reply against the milliseconds of a model call. How each backend asks
for the schema is its own: ``response_format`` as is (OpenAI-compatible), a forced tool call
(Anthropic), guided decoding (vLLM).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import orjson

from datamill.errors import ConfigError, InvalidResponseError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply: the whole text, a fenced block, or the outermost ``{...}``."""
    candidates = [text.strip()]
    candidates += [match.strip() for match in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise InvalidResponseError(f"the reply is not a JSON object: {text[:200]!r}")


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """What makes ``value`` invalid under ``schema``, one ``"$.path: reason"`` per error
    (empty when it is valid), by the ``jsonschema`` validator of the schema's draft."""
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_path(error.absolute_path)}: {error.message}" for error in errors]


def check_schema(schema: dict[str, Any]) -> None:
    """``ConfigError`` unless ``schema`` is a valid JSON schema (at construction, not per reply)."""
    _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    """A checked validator per distinct schema (building one costs far more than using it)."""
    import jsonschema

    schema = orjson.loads(schema_json)
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"the JSON schema is not valid: {exc.message}") from None
    return validator_class(schema)


def _path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def schema_and_model(schema_or_model: Any) -> tuple[dict[str, Any], Any]:
    """The JSON schema and, for a pydantic model class, the class (else None)."""
    if isinstance(schema_or_model, type) and hasattr(schema_or_model, "model_json_schema"):
        return schema_or_model.model_json_schema(), schema_or_model
    if isinstance(schema_or_model, dict):
        return schema_or_model, None
    raise ConfigError(
        f"a JSON schema must be a dict or a pydantic model class, got {type(schema_or_model).__name__}"
    )


def response_format_for(
    schema_or_model: Any, name: str = "response", *, strict: bool = False
) -> dict[str, Any]:
    """The OpenAI ``response_format`` parameter asking for replies in the schema."""
    schema, _ = schema_and_model(schema_or_model)
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


def validate_reply(text: str, schema_or_model: Any) -> dict[str, Any]:
    """The reply's JSON object, validated; ``InvalidResponseError`` names the field and reason.

    With a pydantic model the model validates (and the result is its JSON-mode dump);
    with a dict schema, ``jsonschema`` does (``schema_errors``).
    """
    data = parse_json_object(text)
    schema, model = schema_and_model(schema_or_model)
    if model is not None:
        from pydantic import ValidationError

        try:
            return model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidResponseError(f"the reply does not match {model.__name__}: {exc}") from None
    errors = schema_errors(data, schema)
    if errors:
        raise InvalidResponseError("the reply does not match the schema: " + "; ".join(errors[:5]))
    return data
