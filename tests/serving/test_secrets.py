"""API keys never reach the cache directory, the state database, logs or error messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from datamill import APILLMServing_request
from datamill.errors import ServingError
from datamill.serving.anthropic import AnthropicLLMServing
from tests.serving.serving_helpers import FAST_RETRY, OneStepPipeline, write_rows

OPENAI_KEY = "sk-proj-DISTINCTIVE-openai-key-7f3a9c1e5b"
ANTHROPIC_KEY = "sk-ant-api03-DISTINCTIVE-anthropic-key-2d8e4f"


def files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_the_api_key_appears_in_no_file_of_the_cache_dir_and_in_no_log_line(
    sim, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    key = OPENAI_KEY if backend == "openai" else ANTHROPIC_KEY
    sim.configure(require_api_key=key, failure_rate=0.1, drop_rate=0.05, seed=11)
    if backend == "openai":
        serving = APILLMServing_request(
            sim.openai_base, "gpt-4o-mini", max_workers=8, api_key=key, retry=FAST_RETRY
        )
    else:
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
        serving = AnthropicLLMServing(sim.anthropic_base, "claude-haiku-4-5", max_workers=8, retry=FAST_RETRY)
    caplog.set_level(logging.DEBUG)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 60), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=10)
    assert summary.rows_failed == 0 and summary.steps[0].retries > 0
    assert sim.stats()["unauthorized"] == 0  # the key was really sent
    assert any("retrying" in record.getMessage() for record in caplog.records)

    sim.configure(require_api_key=key + "-rotated")  # now the key is refused: errors are recorded
    more = OneStepPipeline(write_rows(tmp_path / "more.jsonl", 80), tmp_path / "cache", serving)
    with pytest.raises(ServingError) as caught:
        more.forward(batch_size=10)
    assert "401" in str(caught.value) and key not in str(caught.value)

    assert files_containing(tmp_path / "cache", key) == []
    assert key not in caplog.text
    assert all(key not in str(record.args) for record in caplog.records)
