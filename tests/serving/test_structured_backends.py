"""Structured output on every backend: OpenAI ``response_format``, Anthropic forced tool use
(online and in Message Batches), local backends that say what they support."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from datamill import (
    AnthropicLLMServing,
    APILLMServing_request,
    BatchedFileStorage,
    BatchedPipelineABC,
    LLMScorer,
    LocalModelLLMServing_transformers,
    StructuredGenerator,
)
from datamill.errors import ConfigError, InvalidResponseError, ServingError
from datamill.serving.base import LLMServingABC
from datamill.serving.structured import validate_reply
from tests.serving.serving_helpers import FAST_RETRY, read_jsonl, write_rows

QUIZ = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["question", "difficulty", "tags"],
    "additionalProperties": False,
}


class QuizPipeline(BatchedPipelineABC):
    allowed_failure_fraction = 1.0

    def __init__(self, input_path: Path, cache_path: Path, serving: LLMServingABC) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(input_path), cache_path=str(cache_path), file_name_prefix="quiz"
        )
        self.quiz = StructuredGenerator(serving, "Write a quiz question.", QUIZ, schema_name="quiz")

    def forward(self) -> None:
        self.quiz.run(self.storage.step(), input_key="text")


def anthropic(sim: Any, **options: Any) -> AnthropicLLMServing:
    return AnthropicLLMServing(
        sim.anthropic_base, "claude-haiku-4-5", max_workers=8, retry=FAST_RETRY, **options
    )


def test_anthropic_structured_rows_come_from_the_forced_tool_call(sim, tmp_path: Path) -> None:
    pipeline = QuizPipeline(write_rows(tmp_path / "in.jsonl", 12), tmp_path / "cache", anthropic(sim))
    summary = pipeline.forward(batch_size=5)
    out = read_jsonl(pipeline.step_paths()[-1])
    assert summary.rows_failed == 0 and len(out) == 12
    for row in out:
        assert row["question"].startswith("[claude-haiku-4-5|") and row["question"].endswith(row["text"])
        assert 1 <= row["difficulty"] <= 5 and row["tags"]
    assert sim.stats()["requests"] == 12


def test_an_anthropic_reply_without_a_tool_use_block_is_an_invalid_reply_not_a_crash(
    sim, tmp_path: Path
) -> None:
    sim.configure(invalid_reply_rate=1.0)
    pipeline = QuizPipeline(write_rows(tmp_path / "in.jsonl", 4), tmp_path / "cache", anthropic(sim))
    summary = pipeline.forward(batch_size=4)
    assert summary.rows_failed == 4 and sim.stats()["requests"] == 4 * 3
    errors = [error for _, error in summary.steps[0].failure_samples]
    assert errors and all("not a JSON object" in e and "(after 3 attempts)" in e for e in errors)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_invalid_batch_api_replies_are_resubmitted_then_reported_as_failed_rows(
    sim, tmp_path: Path, provider: str
) -> None:
    sim.configure(invalid_reply_rate=1.0, batch_processing_seconds=0.05, batch_validating_seconds=0.0)
    options = {"use_offline_batch_generation": True, "offline_batch_generation_block_until_done": 0.05}
    serving = (
        anthropic(sim, **options)
        if provider == "anthropic"
        else APILLMServing_request(sim.openai_base, "gpt-4o-mini", 8, retry=FAST_RETRY, **options)
    )
    pipeline = QuizPipeline(write_rows(tmp_path / "in.jsonl", 5), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=2)
    stats = sim.stats()
    assert summary.rows_failed == 5 and stats["requests"] == 0
    assert stats["batches_created"] == 3 and stats["batch_requests"] == 5 * 3  # first try, two resubmissions
    errors = [error for _, error in summary.steps[0].failure_samples]
    assert errors and all("(after 3 attempts)" in e and "bug" not in e for e in errors)
    again = pipeline.forward(batch_size=2)  # a rerun replays every attempt from the cache
    assert again.rows_failed == 5 and sim.stats()["batch_requests"] == 5 * 3


def test_a_share_of_invalid_batch_replies_is_retried_until_valid(sim, tmp_path: Path) -> None:
    sim.configure(invalid_reply_rate=0.5, batch_processing_seconds=0.05)
    options = {"use_offline_batch_generation": True, "offline_batch_generation_block_until_done": 0.05}
    pipeline = QuizPipeline(
        write_rows(tmp_path / "in.jsonl", 16), tmp_path / "cache", anthropic(sim, **options)
    )
    summary = pipeline.forward(batch_size=4)
    out = read_jsonl(pipeline.step_paths()[-1])
    assert len(out) + summary.rows_failed == 16 and len(out) > 8
    assert 16 < sim.stats()["batch_requests"] < 16 * 3


def test_validation_errors_name_the_field_and_the_reason() -> None:
    with pytest.raises(InvalidResponseError, match=r"\$\.difficulty: 9 is greater than the maximum of 5"):
        validate_reply('{"question": "q", "difficulty": 9, "tags": ["a"]}', QUIZ)
    with pytest.raises(InvalidResponseError, match=r"\$\.tags\[1\]: 3 is not of type 'string'"):
        validate_reply('{"question": "q", "difficulty": 2, "tags": ["a", 3]}', QUIZ)
    with pytest.raises(InvalidResponseError, match=r"Additional properties are not allowed \('extra'"):
        validate_reply('{"question": "q", "difficulty": 2, "tags": ["a"], "extra": 1}', QUIZ)
    with pytest.raises(ConfigError, match="the JSON schema is not valid"):
        validate_reply("{}", {"type": "no-such-type"})


class JudgePipeline(BatchedPipelineABC):
    def __init__(self, input_path: Path, cache_path: Path, serving: LLMServingABC, **judge: Any) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(input_path), cache_path=str(cache_path), file_name_prefix="judge"
        )
        self.judge = LLMScorer(serving, criteria="Is it clear?", **judge)

    def forward(self) -> None:
        self.judge.run(self.storage.step(), input_key="text")


def test_a_local_backend_without_structured_output_fails_compile_saying_so(tmp_path: Path) -> None:
    local = LocalModelLLMServing_transformers(model=object(), tokenizer=object())
    source = write_rows(tmp_path / "in.jsonl", 2)
    with pytest.raises(
        ConfigError,
        match="StructuredGenerator asks .* for json_schema replies, but this backend supports no structured output",
    ):
        QuizPipeline(source, tmp_path / "a", local).compile()
    with pytest.raises(ConfigError, match="use_response_format=False"):
        JudgePipeline(source, tmp_path / "b", local).compile()
    JudgePipeline(source, tmp_path / "c", local, use_response_format=False).compile()


def test_vllm_states_guided_decoding_and_asks_for_a_vllm_that_has_it(tmp_path: Path) -> None:
    from datamill.serving.local_vllm import LocalModelLLMServing_vllm, guided_decoding

    serving = LocalModelLLMServing_vllm("some/model")
    assert serving.structured_output == {"json_schema", "json_object"}
    QuizPipeline(write_rows(tmp_path / "in.jsonl", 2), tmp_path / "cache", serving).compile()
    assert guided_decoding(None) == {}
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ServingError, match=r"no guided decoding .*pip install 'vllm>=0.6.3'"):
            guided_decoding({"type": "json_schema", "json_schema": {"name": "q", "schema": QUIZ}})


def test_without_blocking_each_rerun_collects_and_resubmits_invalid_replies_until_the_bound(
    sim, tmp_path: Path
) -> None:
    import time

    from datamill import OfflineBatchGenerationNotFinished

    sim.configure(invalid_reply_rate=1.0, batch_processing_seconds=0.05, batch_validating_seconds=0.0)
    serving = anthropic(sim, use_offline_batch_generation=True)
    pipeline = QuizPipeline(write_rows(tmp_path / "in.jsonl", 3), tmp_path / "cache", serving)
    submitted: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            summary = pipeline.forward(batch_size=2)
            break
        except OfflineBatchGenerationNotFinished:
            submitted.append(sim.stats()["batch_requests"])
            time.sleep(0.2)
    # the first try, then one resubmission per rerun that found the previous one ended
    assert sorted(set(submitted)) == [3, 6, 9] and sim.stats()["batch_requests"] == 9
    assert summary.rows_failed == 3
