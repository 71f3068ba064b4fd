"""The providers datamill knows, by the name recorded with their requests and batch jobs.

Each provider is one module (``datamill.serving.openai_compat``, ``datamill.serving.anthropic``)
that defines ``NAME``, ``KEY_ENV`` (the environment variable its key is read from), its online
serving class and ``BATCH_PROVIDER`` (its Batch API class, which reads and cancels the jobs
recorded under ``NAME``: ``datamill jobs``). Adding a provider is that module plus one line in
``PROVIDER_MODULES`` (docs/providers.md). Modules are imported on first use, so the registry
costs nothing at ``import datamill`` and imports no serving module at its own import: no cycle.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from datamill.errors import ConfigError

#: provider name -> the module holding its online serving and its Batch API.
PROVIDER_MODULES: dict[str, str] = {
    "openai": "datamill.serving.openai_compat",
    "anthropic": "datamill.serving.anthropic",
}


def provider_module(name: str) -> ModuleType:
    """The module of provider ``name``; ``ConfigError`` naming the known ones otherwise."""
    if name not in PROVIDER_MODULES:
        known = ", ".join(sorted(PROVIDER_MODULES))
        raise ConfigError(f"unknown provider {name!r} (known: {known})")
    return importlib.import_module(PROVIDER_MODULES[name])


def key_env(name: str) -> str:
    """The environment variable provider ``name`` reads its API key from."""
    return str(provider_module(name).KEY_ENV)


def batch_provider_for_record(name: str, base_url: str, api_key: str | None) -> Any:
    """A ``BatchProvider`` able to read and cancel recorded jobs (it encodes no requests)."""
    return provider_module(name).BATCH_PROVIDER(base_url, api_key, _no_body)


def _no_body(request: Any) -> dict[str, Any]:
    raise ConfigError("this Batch API client was built to read job records, not to encode requests")
