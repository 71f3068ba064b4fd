"""Build a JSON value that validates against a JSON schema, deterministically.

Structured-output steps need replies that parse into their schema; the simulator cannot ask a
model, so it walks the schema. Supported: ``type`` (one or a list), objects (every property,
required or not), arrays (``items``, ``prefixItems``, ``minItems``/``maxItems``, ``uniqueItems``),
strings (``minLength``/``maxLength``, ``enum``, ``const``, common ``format``s), integers and numbers
(inclusive and exclusive bounds, ``multipleOf`` for integers), booleans, null, ``anyOf``/``oneOf``
(first non-null branch), ``allOf`` (merged), and local ``$ref`` into ``$defs``/``definitions``
(what pydantic emits). ``pattern`` is not honoured.

Every string is the reply text, so a structured reply still names its request; numbers and
choices come from ``seed`` so different requests get different values.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

_MAX_DEPTH = 12
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "simulator@example.com",
    "uri": "https://example.com/simulator",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def generate_instance(schema: dict[str, Any], *, text: str, seed: str) -> Any:
    """Return a value valid under ``schema``; strings are ``text``, other choices derive from ``seed``."""
    return _Generator(schema, text, seed).value(schema, "$", 0)


class _Generator:
    def __init__(self, root: dict[str, Any], text: str, seed: str) -> None:
        self.root = root
        self.text = text
        self.seed = seed

    def pick(self, path: str) -> int:
        return zlib.crc32(f"{self.seed}:{path}".encode())

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = self.root
        for part in (p for p in ref[1:].split("/") if p):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def value(self, schema: Any, path: str, depth: int) -> Any:
        if not isinstance(schema, dict):
            return self.text
        if "$ref" in schema:
            merged = {**self.resolve(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.value(merged, path, depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema and schema["enum"]:
            options = schema["enum"]
            return options[self.pick(path) % len(options)]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                branches = schema[key]
                chosen = next((b for b in branches if not _is_null(b)), branches[0])
                return self.value(chosen, path, depth + 1)
        if schema.get("allOf"):
            return self.value(_merge_all_of(schema), path, depth + 1)
        kind = _schema_type(schema)
        if kind == "object":
            return self.object_value(schema, path, depth)
        if kind == "array":
            return self.array_value(schema, path, depth)
        if kind == "integer":
            return self.integer_value(schema, path)
        if kind == "number":
            return self.number_value(schema, path)
        if kind == "boolean":
            return self.pick(path) % 2 == 0
        if kind == "null":
            return None
        return self.string_value(schema, path)

    def object_value(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        keys = list(properties) if depth < _MAX_DEPTH else [k for k in properties if k in required]
        return {key: self.value(properties[key], f"{path}.{key}", depth + 1) for key in keys}

    def array_value(self, schema: dict[str, Any], path: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        low = max(int(schema.get("minItems", 0)), len(prefix))
        high = schema.get("maxItems")
        wanted = 1 if schema.get("uniqueItems") or depth >= _MAX_DEPTH else 2
        count = max(low, wanted if high is None else min(wanted, int(high)))
        items = schema.get("items")
        out = []
        for i in range(count):
            element = prefix[i] if i < len(prefix) else items
            value = self.value(element if isinstance(element, dict) else {}, f"{path}[{i}]", depth + 1)
            if schema.get("uniqueItems") and isinstance(value, str) and i:
                value = f"{value} #{i}"
            out.append(value)
        return out

    def integer_value(self, schema: dict[str, Any], path: str) -> int:
        low, high = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = -(-low // step) * step
            choices = max(1, (high - first) // step + 1)
            return first + (self.pick(path) % choices) * step
        return low + self.pick(path) % (high - low + 1)

    def number_value(self, schema: dict[str, Any], path: str) -> float:
        low, high = _bounds(schema, integer=False)
        fraction = (self.pick(path) % 999 + 1) / 1000
        return min(max(round(low + fraction * (high - low), 6), low), high)

    def string_value(self, schema: dict[str, Any], path: str) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            digits = f"{self.pick(path):08x}{zlib.crc32(self.seed.encode()):08x}".ljust(32, "0")
            return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-8{digits[17:20]}-{digits[20:32]}"
        value = _FORMATS.get(fmt, self.text) if fmt else self.text
        min_length = int(schema.get("minLength", 0))
        if len(value) < min_length:
            value = value + "." * (min_length - len(value))
        if "maxLength" in schema:
            value = value[: int(schema["maxLength"])]
        return value


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _schema_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
    return kind


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    properties: dict[str, Any] = dict(merged.get("properties") or {})
    required: list[str] = list(merged.get("required") or [])
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        properties.update(part.get("properties") or {})
        required.extend(part.get("required") or [])
        for key, value in part.items():
            if key not in ("properties", "required"):
                merged.setdefault(key, value)
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[Any, Any]:
    """The inclusive range a value may take, honouring exclusive bounds and a default span of 100."""
    unit = 1 if integer else 0.001
    low = schema.get("minimum")
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        low = (
            schema["exclusiveMinimum"] + unit if low is None else max(low, schema["exclusiveMinimum"] + unit)
        )
    high = schema.get("maximum")
    if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
        high = (
            schema["exclusiveMaximum"] - unit
            if high is None
            else min(high, schema["exclusiveMaximum"] - unit)
        )
    if low is None:
        low = 0 if high is None or high >= 0 else high - 100
    if high is None:
        high = low + 100
    if integer:
        low, high = math.ceil(low), math.floor(high)
    return low, max(low, high)
