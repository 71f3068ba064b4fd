"""Provider-neutral request and response types.

Every backend translates these at its own edge; the engine, the request cache and the offline
batch code only ever see ``GenericRequest`` and ``GenericResponse``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

REQUEST_KEY_VERSION = 2  # 2: canonical JSON by orjson (sorted keys, compact, UTF-8)


@dataclass(slots=True)
class GenericRequest:
    """One model call: chat messages plus generation parameters.

    ``key`` is the request's identity in the request cache and the ``custom_id`` of Batch API
    lines: a versioned SHA-256 of provider, model, messages and params (64 hex characters).
    Parsing settings never enter it, so changing how replies are parsed costs no calls.

    ``salt`` makes an otherwise identical request distinct: a retry of a reply that failed
    validation (``"attempt-1"``), or the k-th of n samples on a backend without ``n``. It is part
    of the key only when set, so unsalted keys are unchanged; backends send it harmlessly or not
    at all (see each backend).
    """

    provider: str
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    salt: str | None = None
    _key: str | None = None

    @property
    def key(self) -> str:
        if self._key is None:
            parts: list[Any] = [REQUEST_KEY_VERSION, self.provider, self.model, self.messages, self.params]
            if self.salt:
                parts.append({"salt": self.salt})
            payload = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
            self._key = hashlib.sha256(payload).hexdigest()
        return self._key

    def with_salt(self, salt: str | None) -> GenericRequest:
        """The same request with ``salt`` (a distinct key; see the class docstring)."""
        return GenericRequest(self.provider, self.model, self.messages, self.params, salt)


@dataclass(slots=True)
class GenericResponse:
    """A model's reply: one text per choice, token usage, and whether it came from the cache."""

    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cached: bool = False
    offline: bool = False

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    def to_cache(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model": self.model,
            "offline": self.offline,
        }

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> GenericResponse:
        return cls(
            texts=list(data["texts"]),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            model=str(data.get("model", "")),
            cached=True,
            offline=bool(data.get("offline", False)),
        )
