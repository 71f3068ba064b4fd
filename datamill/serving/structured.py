"""Structured output, the serving side: asking for a JSON schema and checking replies against it.

``response_format_for`` builds the ``response_format`` request parameter from a JSON schema or
a pydantic model; ``validate_reply`` turns a reply text into the validated object or raises
``InvalidResponseError`` with the reason (the engine then retries the row with a salted
request, up to the operator's ``invalid_reply_retries``, and fails the row after that).

Models asked for JSON still wrap it in code fences or a sentence now and then, so
``parse_json_object`` looks for the object inside the text. ``schema_errors`` checks the
subset of JSON Schema that structured-output APIs accept (types, properties, required,
additionalProperties, items, enum, const, numeric and length bounds, anyOf/oneOf/allOf, local
``$ref``); it is small on purpose — no ``jsonschema`` dependency.
"""

from __future__ import annotations

import json
import re
from typing import Any

from datamill.errors import ConfigError, InvalidResponseError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


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
    """What makes ``value`` invalid under ``schema`` (empty when it is valid)."""
    errors: list[str] = []
    _check(value, schema, schema, "$", errors)
    return errors


def _check(value: Any, schema: Any, root: dict[str, Any], path: str, errors: list[str]) -> None:
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        _check(value, _resolve(root, schema["$ref"]), root, path, errors)
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    for part in schema.get("allOf") or []:
        _check(value, part, root, path, errors)
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if branches and all(_branch_errors(value, b, root, path) for b in branches):
            errors.append(f"{path}: matches none of the {key} branches")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_type(value, kind) for kind in kinds):
            errors.append(f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}")
            return
    if isinstance(value, dict):
        _check_object(value, schema, root, path, errors)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, errors)
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path, errors)


def _branch_errors(value: Any, schema: Any, root: dict[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    _check(value, schema, root, path, errors)
    return errors


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str, errors: list[str]
) -> None:
    properties = schema.get("properties") or {}
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(f"{path}: missing required field {key!r}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            _check(item, properties[key], root, f"{path}.{key}", errors)
        elif extra is False:
            errors.append(f"{path}: unexpected field {key!r}")
        elif isinstance(extra, dict):
            _check(item, extra, root, f"{path}.{key}", errors)


def _check_array(
    value: list[Any], schema: dict[str, Any], root: dict[str, Any], path: str, errors: list[str]
) -> None:
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    prefix = schema.get("prefixItems") or []
    for index, item in enumerate(value):
        element = prefix[index] if index < len(prefix) else schema.get("items")
        _check(item, element, root, f"{path}[{index}]", errors)


def _check_number(value: float, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    low, high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(low, (int, float)) and not isinstance(low, bool) and value <= low:
        errors.append(f"{path}: {value} must be above {low}")
    if isinstance(high, (int, float)) and not isinstance(high, bool) and value >= high:
        errors.append(f"{path}: {value} must be below {high}")


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def _resolve(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in (p for p in ref[1:].split("/") if p):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


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


def schema_instruction(response_format: dict[str, Any]) -> str:
    """A system-prompt instruction for backends without ``response_format`` (Anthropic)."""
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if schema is None:
        return "Reply with a single JSON object and nothing else."
    return "Reply with a single JSON object and nothing else, valid under this JSON schema:\n" + json.dumps(
        schema, ensure_ascii=False, sort_keys=True
    )


def validate_reply(text: str, schema_or_model: Any) -> dict[str, Any]:
    """The reply's JSON object, validated; ``InvalidResponseError`` says what is wrong.

    With a pydantic model the model validates (and the result is its JSON-mode dump);
    with a dict schema, ``schema_errors`` does.
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
