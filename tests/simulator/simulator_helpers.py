"""Helpers of the simulator tests: request bodies, batch files, polling, a small schema validator."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    """One HTTP response, read whole."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """A tiny proxy-free HTTP client (stdlib only) for raw requests to a simulator."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with _OPENER.open(request, timeout=10) as response:
                return Reply(
                    response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
                )
        except urllib.error.HTTPError as error:
            return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, payload: Any = None, headers: dict[str, str] | None = None) -> Reply:
        body = json.dumps(payload if payload is not None else {}).encode()
        return self.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})

    def upload(self, data: bytes, purpose: str = "batch", filename: str = "in.jsonl") -> Reply:
        """``POST /v1/files`` as multipart/form-data."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
            + b"Content-Type: application/octet-stream\r\n\r\n"
            + data
            + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.request("POST", "/v1/files", b"".join(parts), headers)


def chat_body(
    text: str, model: str = "gpt-4o-mini", system: str | None = None, **params: Any
) -> dict[str, Any]:
    """A chat-completions body whose last user message is ``text``."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": text})
    return {"model": model, "messages": messages, **params}


def batch_line(custom_id: str, text: str, **overrides: Any) -> dict[str, Any]:
    """One OpenAI batch input line for a chat completion of ``text``."""
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": chat_body(text)}
    line.update(overrides)
    return line


def jsonl(lines: list[Any]) -> bytes:
    """Encode ``lines`` (dicts, or raw strings kept as they are) as JSONL."""
    return b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines)


def parse_jsonl(data: bytes | str) -> list[dict[str, Any]]:
    """Decode a JSONL payload."""
    text = data.decode() if isinstance(data, bytes) else data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def upload_and_create(http: Http, data: bytes, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Upload ``data`` as a batch input file and create a chat-completions batch from it."""
    uploaded = http.upload(data)
    assert uploaded.status == 200, uploaded.body
    body: dict[str, Any] = {
        "input_file_id": uploaded.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    if metadata is not None:
        body["metadata"] = metadata
    created = http.post("/v1/batches", body)
    assert created.status == 200, created.body
    return created.json()


def poll_until(fetch: Callable[[], dict], done: Callable[[dict], bool], timeout: float = 10.0) -> list[dict]:
    """Call ``fetch`` every 10 ms until ``done(result)``; return every distinct state seen."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        current = fetch()
        if not seen or current != seen[-1]:
            seen.append(current)
        if done(current):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last state: {current}")
        time.sleep(0.01)


def validate(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> list[str]:
    """The ways ``instance`` breaks ``schema`` (empty when valid); covers the subset the simulator fills."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return validate(instance, target, root)
    errors: list[str] = []
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{instance!r} != const {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{instance!r} not in enum")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matches = sum(not validate(instance, branch, root) for branch in schema[key])
            if matches == 0 or (key == "oneOf" and matches > 1):
                errors.append(f"{instance!r} fails {key}")
    for branch in schema.get("allOf", []):
        errors += validate(instance, branch, root)
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if kinds and not any(checks[k](instance) for k in kinds):
        return errors + [f"{instance!r} is not {kinds}"]
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        errors += [f"missing {name}" for name in schema.get("required", []) if name not in instance]
        if schema.get("additionalProperties") is False:
            errors += [f"extra {name}" for name in instance if name not in properties]
        for name, value in instance.items():
            if name in properties:
                errors += validate(value, properties[name], root)
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0) or len(instance) > schema.get("maxItems", 10**9):
            errors.append(f"array length {len(instance)} out of bounds")
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in instance}) != len(
            instance
        ):
            errors.append("array items are not unique")
        for index, value in enumerate(instance):
            prefix = schema.get("prefixItems", [])
            item_schema = prefix[index] if index < len(prefix) else schema.get("items", {})
            errors += validate(value, item_schema, root)
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0) or len(instance) > schema.get("maxLength", 10**9):
            errors.append(f"string length {len(instance)} out of bounds")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{instance} < minimum")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{instance} > maximum")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            errors.append(f"{instance} <= exclusiveMinimum")
        if "exclusiveMaximum" in schema and instance >= schema["exclusiveMaximum"]:
            errors.append(f"{instance} >= exclusiveMaximum")
        if "multipleOf" in schema and instance % schema["multipleOf"]:
            errors.append(f"{instance} is not a multiple of {schema['multipleOf']}")
    return errors
