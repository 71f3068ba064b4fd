"""Every knob of the provider simulator, in one frozen dataclass.

A config is a value: the running server swaps in a new one (``POST /_sim/config``) instead of
mutating fields, so a handler that read ``state.config`` once sees one consistent set of knobs.
The command-line flags and the run-time update endpoint are both derived from these fields
(``knob_flags.py``, ``coerce_knob``), so adding a knob here is the whole change.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any

DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
)

MiB = 1024 * 1024


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated provider behaves. Zero/None everywhere means a perfect, instant provider."""

    latency_mean: float = _knob(0.0, "mean seconds slept before answering a model call (0 = no sleep)")
    latency_jitter: float = _knob(0.0, "latency is uniform in mean +/- jitter, clipped at 0")
    failure_rate: float = _knob(0.0, "fraction of model calls answered HTTP 500")
    malformed_rate: float = _knob(0.0, "fraction answered HTTP 200 with an unusable body")
    drop_rate: float = _knob(0.0, "fraction whose connection is closed without a response")
    invalid_reply_rate: float = _knob(
        0.0, "fraction of structured replies that break their schema (chosen by the request's hash)"
    )
    rpm_limit: int | None = _knob(None, "requests per minute before HTTP 429 (token bucket)")
    rpm_burst: int | None = _knob(None, "token-bucket capacity; default: rpm_limit")
    seed: int = _knob(0, "seed of every random choice the simulator makes")
    require_api_key: str | None = _knob(None, "answer 401 unless the request carries this key")
    echo_api_key: int = _knob(
        0, "1: 401s, failed batch lines and batch validation errors quote the caller's key in full"
    )
    batch_validating_seconds: float = _knob(0.05, "seconds an OpenAI batch stays 'validating'")
    batch_processing_seconds: float = _knob(1.0, "seconds from in_progress to all lines done")
    batch_finalizing_seconds: float = _knob(0.05, "seconds spent 'finalizing' or 'cancelling'")
    batch_failed_line_rate: float = _knob(0.0, "fraction of batch lines that fail with a 500")
    batch_expiry_seconds: float | None = _knob(None, "seconds after creation a batch expires")
    batch_create_delay_seconds: float = _knob(
        0.0, "seconds an OpenAI batch create takes; the batch exists after it even if the client left"
    )
    openai_batch_max_lines: int = _knob(50_000, "lines allowed in one OpenAI batch input file")
    openai_batch_max_bytes: int = _knob(200 * MiB, "bytes allowed in one OpenAI batch input file")
    anthropic_batch_max_requests: int = _knob(100_000, "requests allowed in one Anthropic batch")
    anthropic_batch_max_bytes: int = _knob(256 * MiB, "bytes allowed in one Anthropic batch request")
    max_upload_bytes: int = _knob(512 * MiB, "largest file POST /v1/files accepts")
    embedding_dim: int = _knob(16, "length of embedding vectors unless 'dimensions' is asked")
    models: tuple[str, ...] = _knob(DEFAULT_MODELS, "model ids listed by GET /v1/models")
    reject_unknown_models: bool = _knob(False, "answer HTTP 404 model_not_found to a model not in models")

    def __post_init__(self) -> None:
        for name in (
            "failure_rate",
            "malformed_rate",
            "drop_rate",
            "batch_failed_line_rate",
            "invalid_reply_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.failure_rate + self.malformed_rate + self.drop_rate > 1.0 + 1e-9:
            raise ValueError("failure_rate + malformed_rate + drop_rate must not exceed 1")
        for name in (
            "latency_mean",
            "latency_jitter",
            "batch_validating_seconds",
            "batch_processing_seconds",
            "batch_finalizing_seconds",
            "batch_create_delay_seconds",
        ):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.echo_api_key not in (0, 1):
            raise ValueError(f"echo_api_key must be 0 or 1, got {self.echo_api_key!r}")
        if self.batch_expiry_seconds is not None and self.batch_expiry_seconds <= 0:
            raise ValueError("batch_expiry_seconds must be > 0 or None")
        for name in ("rpm_limit", "rpm_burst"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
        for name in (
            "openai_batch_max_lines",
            "openai_batch_max_bytes",
            "anthropic_batch_max_requests",
            "anthropic_batch_max_bytes",
            "max_upload_bytes",
            "embedding_dim",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    def with_knobs(self, **knobs: Any) -> SimulatorConfig:
        """Return a copy with ``knobs`` changed, each checked and coerced by ``coerce_knob``."""
        changes = {name: coerce_knob(name, value) for name, value in knobs.items()}
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (what ``GET /_sim/config`` returns)."""
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        return data


@cache
def knob_types() -> dict[str, Any]:
    """Each knob's resolved type annotation, e.g. ``{"rpm_limit": int | None, ...}``."""
    hints = typing.get_type_hints(SimulatorConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(SimulatorConfig)}


def knob_base_type(name: str) -> tuple[type, bool]:
    """The knob's scalar type (``bool``, ``int``, ``float``, ``str`` or ``tuple``) and whether None is allowed."""
    hint = knob_types()[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
    return origin, optional


def coerce_knob(name: str, value: Any) -> Any:
    """Check a JSON value for knob ``name`` and convert it to the field's type.

    Raises ``KeyError`` for an unknown knob and ``ValueError`` for a value of the wrong type, so
    ``POST /_sim/config`` can answer 400 instead of storing a string where a float belongs.
    """
    if name not in knob_types():
        raise KeyError(f"unknown simulator knob {name!r}")
    base, optional = knob_base_type(name)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} cannot be null")
    if base is tuple:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings")
        return tuple(value)
    if base is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a {base.__name__}, got {value!r}")
    if base is str:
        return str(value)
    if base is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return float(value)
