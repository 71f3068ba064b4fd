"""Structured output: the request asks for the schema, replies are validated, invalid ones retried."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, field_validator

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, StructuredGenerator
from datamill.errors import InvalidResponseError
from datamill.pipeline.llm_batch import salted
from datamill.serving.structured import response_format_for, validate_reply
from datamill.serving.types import GenericRequest
from tests.serving.serving_helpers import FAST_RETRY, read_jsonl, write_rows

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}


class Echo(BaseModel):
    text: str

    @field_validator("text")
    @classmethod
    def reject_half_by_hash(cls, value: str) -> str:
        """The simulator's reply names its request hash; reject it when the hash starts low."""
        digest = value.split("|")[1]
        if digest[0] in "01234567":
            raise ValueError(f"rejected by the test ({digest})")
        return value


def test_validate_reply_accepts_valid_json_in_fences_and_explains_invalid_ones() -> None:
    assert validate_reply('Sure:\n```json\n{"n": 3}\n```', SCHEMA) == {"n": 3}
    with pytest.raises(InvalidResponseError, match=r"\$\.n: 0 is less than the minimum of 1"):
        validate_reply('{"n": 0}', SCHEMA)
    with pytest.raises(InvalidResponseError, match="not a JSON object"):
        validate_reply("no json here", SCHEMA)
    with pytest.raises(InvalidResponseError, match="does not match Echo"):
        validate_reply('{"text": "[m|0abc|0] x"}', Echo)
    assert validate_reply('{"text": "[m|fabc|0] x"}', Echo) == {"text": "[m|fabc|0] x"}


def test_response_format_for_a_pydantic_model_carries_its_schema() -> None:
    fmt = response_format_for(Echo, "echo", strict=True)
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["text"]["type"] == "string"


def test_a_salted_request_has_a_distinct_key_and_an_unsalted_key_is_unchanged() -> None:
    request = GenericRequest("openai", "m", [{"role": "user", "content": "hi"}], {})
    plain_key = request.key
    assert GenericRequest("openai", "m", [{"role": "user", "content": "hi"}], {}).key == plain_key
    first, second = salted(request, 1), salted(salted(request, 1), 2)
    assert len({plain_key, first.key, second.key}) == 3
    assert second.salt == "attempt-2"
    assert salted(request.with_salt("sample-1"), 1).salt == "sample-1/attempt-1"


class EchoPipeline(BatchedPipelineABC):
    def __init__(self, input_path: Path, cache_path: Path, api_url: str, retries: int | None = None) -> None:
        super().__init__()
        self.allowed_failure_fraction = 1.0
        self.storage = BatchedFileStorage(
            str(input_path), cache_path=str(cache_path), file_name_prefix="echo"
        )
        self.llm = APILLMServing_request(api_url, "gpt-4o-mini", max_workers=8, retry=FAST_RETRY)
        self.gen = StructuredGenerator(self.llm, "Echo the text.", Echo)
        if retries is not None:
            self.gen.invalid_reply_retries = retries

    def forward(self) -> None:
        self.gen.run(self.storage.step(), input_key="text")


def test_invalid_replies_are_retried_with_salted_requests_then_the_row_fails_with_the_reason(
    sim, tmp_path: Path
) -> None:
    rows = 60
    pipeline = EchoPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", sim.openai_base)
    summary = pipeline.forward(batch_size=16)
    stats = sim.stats(detail=True)
    out = read_jsonl(pipeline.step_paths()[-1])
    failed = summary.steps[0].rows_failed
    assert len(out) + failed == rows
    assert 0 < failed < rows / 4  # about 1/8 of the rows fail all three attempts
    assert all(r["text"].split("|")[1][0] not in "01234567" for r in out)
    # attempts: every row once, about half twice, a quarter three times; each paid once
    assert rows * 1.3 < stats["answered"] < rows * 2.2
    assert stats["duplicate_client_keys"] == [] and stats["duplicates"] == 0
    errors = [error for _, error in summary.steps[0].failure_samples]
    assert errors and all("rejected by the test" in e and "after 3 attempts" in e for e in errors)

    before = stats["requests"]
    again = pipeline.forward(batch_size=5)  # failed rows are retried from the cache: nothing sent
    assert sim.stats()["requests"] == before
    assert again.steps[0].rows_failed == failed


def test_invalid_reply_retries_zero_fails_at_the_first_invalid_reply(sim, tmp_path: Path) -> None:
    rows = 30
    pipeline = EchoPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", sim.openai_base, 0)
    summary = pipeline.forward(batch_size=16)
    assert sim.stats()["answered"] == rows
    assert summary.steps[0].rows_failed > 0
