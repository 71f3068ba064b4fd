"""Serving options are explicit: every one is a named parameter, and a misspelt one is refused."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from datamill import (
    AnthropicLLMServing,
    APILLMServing_request,
    LocalModelLLMServing_transformers,
    LocalModelLLMServing_vllm,
)
from datamill.errors import ConfigError
from datamill.serving.anthropic import request_body as anthropic_body
from datamill.serving.openai_compat import request_body as openai_body
from tests.serving.serving_helpers import OneStepPipeline, write_rows

SERVINGS = [
    APILLMServing_request,
    AnthropicLLMServing,
    LocalModelLLMServing_transformers,
    LocalModelLLMServing_vllm,
]


@pytest.mark.parametrize("serving", SERVINGS)
def test_every_option_is_a_named_parameter_of_the_signature(serving: type) -> None:
    parameters = inspect.signature(serving).parameters
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert {"model_name", "temperature", "max_tokens", "params"} <= set(parameters)


def test_a_misspelt_option_is_a_config_error_naming_the_closest_one_and_nothing_is_sent(
    sim, tmp_path: Path
) -> None:
    with pytest.raises(
        ConfigError, match="no option 'use_offline_batch': did you mean 'use_offline_batch_generation'"
    ):
        APILLMServing_request(
            api_url=sim.openai_base, model_name="gpt-4o-mini", use_offline_batch=True, timout=5
        )
    with pytest.raises(ConfigError, match="no option 'timout': did you mean 'timeout'"):
        AnthropicLLMServing(sim.anthropic_base, timout=5)
    with pytest.raises(ConfigError, match="no option 'temprature': did you mean 'temperature'"):
        OneStepPipeline(
            write_rows(tmp_path / "in.jsonl", 3),
            tmp_path / "cache",
            APILLMServing_request(sim.openai_base, "gpt-4o-mini", 4, temprature=0.2),
        ).forward()
    assert sim.stats()["requests"] == 0 and not (tmp_path / "cache").exists()


def test_dataflow_names_and_positional_order_stay() -> None:
    serving = APILLMServing_request("http://127.0.0.1:1/v1", "gpt-4o", 7)
    assert (serving.api_url, serving.model_name, serving.max_workers) == (
        "http://127.0.0.1:1/v1/chat/completions",
        "gpt-4o",
        7,
    )
    named = APILLMServing_request(api_url="http://127.0.0.1:1/v1", model_name="gpt-4o", max_workers=7)
    assert named.fingerprint_config() == serving.fingerprint_config()
    with pytest.raises(ConfigError, match="too many positional arguments"):
        APILLMServing_request("http://127.0.0.1:1/v1", "gpt-4o", 7, "extra")


def test_generation_parameters_are_named_or_in_params_and_reach_the_body_and_the_key() -> None:
    messages = [{"role": "user", "content": "hi"}]
    plain = APILLMServing_request("http://127.0.0.1:1/v1", "gpt-4o-mini")
    tuned = APILLMServing_request(
        "http://127.0.0.1:1/v1", "gpt-4o-mini", temperature=0.3, stop="END", params={"presence_penalty": 0.5}
    )
    body = openai_body(tuned.build_request(messages))
    assert (body["temperature"], body["stop"], body["presence_penalty"]) == (0.3, "END", 0.5)
    assert "use_offline_batch_generation" not in body and "timeout" not in body
    assert tuned.build_request(messages).key != plain.build_request(messages).key
    claude = AnthropicLLMServing("http://127.0.0.1:1", stop=["END"], params={"top_k": 5})
    body = anthropic_body(claude.build_request(messages))
    assert (body["stop_sequences"], body["top_k"], body["max_tokens"]) == (["END"], 5, 1024)
