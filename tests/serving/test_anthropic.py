"""``AnthropicLLMServing`` against the simulator's Messages API."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamill import BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.errors import InvalidResponseError, ServingError
from datamill.serving.anthropic import AnthropicLLMServing, messages_url, read_message, request_body
from datamill.serving.pricing import find_price
from datamill.serving.structured import response_format_for
from tests.serving.serving_helpers import FAST_RETRY, OneStepPipeline, read_jsonl, write_rows


def test_messages_url_accepts_a_full_url_an_api_base_or_a_host() -> None:
    assert messages_url("https://api.anthropic.com/v1/messages") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://api.anthropic.com/v1/") == "https://api.anthropic.com/v1/messages"
    assert messages_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1/messages"


def test_request_body_moves_system_messages_to_the_system_param_and_drops_what_the_api_lacks() -> None:
    serving = AnthropicLLMServing("http://127.0.0.1:1", "claude-haiku-4-5", temperature=0.2)
    request = serving.build_request(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], n=2
    )
    body = request_body(request.with_salt("attempt-1"), sample=1)
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 1024 and body["temperature"] == 0.2
    assert "n" not in body and "tools" not in body
    assert body["metadata"] == {"user_id": "datamill-attempt-1-sample-1"}


def test_a_schema_is_asked_as_a_forced_tool_whose_input_schema_is_the_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    serving = AnthropicLLMServing("http://127.0.0.1:1", "claude-haiku-4-5")
    request = serving.build_request(
        [{"role": "user", "content": "hi"}], response_format=response_format_for(schema, "answer")
    )
    body = request_body(request)
    assert body["tools"] == [
        {
            "name": "answer",
            "description": "Give your answer by calling this tool: its input is the answer.",
            "input_schema": schema,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    assert "response_format" not in body and "system" not in body
    other = serving.build_request(
        [{"role": "user", "content": "hi"}],
        response_format=response_format_for({**schema, "required": []}, "answer"),
    )
    assert other.key != request.key  # the schema is part of the request key
    loose = request_body(
        serving.build_request([{"role": "user", "content": "hi"}], response_format={"type": "json_object"})
    )
    assert loose["tools"][0]["input_schema"] == {"type": "object"}
    assert loose["tool_choice"] == {"type": "tool", "name": "response"}


def test_the_reply_is_the_tool_use_input_and_a_reply_without_one_is_its_text() -> None:
    tool_reply = {
        "model": "m",
        "content": [
            {"type": "text", "text": "Here it is."},
            {"type": "tool_use", "id": "toolu_1", "name": "answer", "input": {"a": "é"}},
        ],
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    assert read_message(tool_reply) == ('{"a":"é"}', 3, 4, "m")
    text_reply = {**tool_reply, "content": [{"type": "text", "text": "no tool"}]}
    assert read_message(text_reply)[0] == "no tool"
    with pytest.raises(InvalidResponseError, match="malformed message"):
        read_message({"content": [{"type": "tool_use"}]})


def test_a_pipeline_over_anthropic_completes_and_costs_usage_times_price(sim, tmp_path: Path) -> None:
    sim.configure(failure_rate=0.1, malformed_rate=0.05, seed=3)
    serving = AnthropicLLMServing(sim.anthropic_base, "claude-sonnet-4-5", max_workers=8, retry=FAST_RETRY)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 50), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=10)
    stats = sim.stats(detail=True)
    out = read_jsonl(pipeline.step_paths()[-1])
    assert len(out) == 50 and all(r["reply"].startswith("[claude-sonnet-4-5|") for r in out)
    assert all(r["reply"].endswith(f"Say: row number {r['id']}") for r in out)
    assert stats["answered"] == 50 and stats["duplicate_client_keys"] == []
    assert summary.steps[0].retries == stats["server_errors"] + stats["malformed"] > 0
    price = find_price("claude-sonnet-4-5", "anthropic")
    assert price is not None
    expected = (stats["prompt_tokens"] * price.input + stats["completion_tokens"] * price.output) / 1e6
    assert summary.cost_usd == pytest.approx(expected, rel=1e-9)


class SamplesPipeline(BatchedPipelineABC):
    def __init__(self, input_path: Path, cache_path: Path, serving: AnthropicLLMServing) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(input_path), cache_path=str(cache_path), file_name_prefix="n")
        self.gen = PromptedGenerator(serving, user_prompt="Say: ", n=3)

    def forward(self) -> None:
        self.gen.run(self.storage.step(), input_key="text", output_key="reply")


def test_n_samples_on_anthropic_are_n_distinct_calls_each_paid_once(sim, tmp_path: Path) -> None:
    serving = AnthropicLLMServing(sim.anthropic_base, "claude-haiku-4-5", max_workers=8, retry=FAST_RETRY)
    pipeline = SamplesPipeline(write_rows(tmp_path / "in.jsonl", 10), tmp_path / "cache", serving)
    pipeline.forward(batch_size=4)
    out = read_jsonl(pipeline.step_paths()[-1])
    assert len(out) == 10 and all(len(set(r["reply"])) == 3 for r in out)
    stats = sim.stats(detail=True)
    assert stats["answered"] == 30 and stats["duplicates"] == 0 and stats["duplicate_client_keys"] == []


def test_anthropic_401_fails_fast_with_the_providers_message(sim, tmp_path: Path) -> None:
    key = "sk-ant-WRONG-0123456789abcdefghij"
    sim.configure(require_api_key="sk-ant-right-000000000000000")
    serving = AnthropicLLMServing(sim.anthropic_base, "claude-haiku-4-5", max_workers=2, api_key=key)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 20), tmp_path / "cache", serving)
    with pytest.raises(ServingError, match="HTTP 401: invalid x-api-key") as caught:
        pipeline.forward(batch_size=5)
    assert key not in str(caught.value)
    assert sim.stats()["requests"] <= 4
