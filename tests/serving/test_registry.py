"""The provider registry: one line per provider module, imported on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from datamill.errors import ConfigError
from datamill.serving.registry import PROVIDER_MODULES, batch_provider_for_record, key_env, provider_module


@pytest.mark.parametrize("name", sorted(PROVIDER_MODULES))
def test_each_provider_module_names_itself_its_key_and_its_batch_api(name: str) -> None:
    module = provider_module(name)
    assert module.NAME == name and module.BATCH_PROVIDER.name == name
    assert key_env(name) == module.KEY_ENV
    client = batch_provider_for_record(name, "http://127.0.0.1:9", None)
    assert isinstance(client, module.BATCH_PROVIDER) and client.base_url == "http://127.0.0.1:9"


def test_an_unknown_provider_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'mistral' \\(known: anthropic, openai\\)"):
        key_env("mistral")


def test_the_registry_imports_no_provider_module_until_asked() -> None:
    code = (
        "import sys, datamill.serving.registry as r; "
        "assert not any(m in sys.modules for m in r.PROVIDER_MODULES.values()); "
        "r.provider_module('anthropic'); print(sorted(m for m in r.PROVIDER_MODULES.values() if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['datamill.serving.anthropic']"
