"""Chunking by the provider's limits, and 120,000 requests as three OpenAI jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers.ledger_runs import running_ledger
from offline_helpers import OfflinePipeline, job_rows

from datamill import OfflineBatchGenerationNotFinished
from datamill.serving.anthropic import AnthropicBatchProvider, request_body
from datamill.serving.offline.engine import prepare_offline_step
from datamill.serving.offline.provider import JobInfo
from datamill.serving.openai_compat import OpenAIBatchProvider
from datamill.serving.types import GenericRequest


class RecordingOpenAI(OpenAIBatchProvider):
    """OpenAI's encoding and limits, with the API replaced by a list of the payloads sent."""

    def __init__(self, **limits: Any) -> None:
        super().__init__(
            "http://127.0.0.1:9/v1", None, lambda r: {"model": r.model, "messages": r.messages}, **limits
        )
        self.payloads: list[bytes] = []

    async def upload(self, chunk_id: str, payload: bytes) -> str:
        self.payloads.append(payload)
        return f"file-{len(self.payloads)}"

    async def create_job(
        self, chunk_id: str, *, file_id: str | None = None, payload: bytes | None = None
    ) -> JobInfo:
        return JobInfo(id=f"batch_{file_id}", status="validating")


class FakeServing:
    use_offline_batch_generation = True
    offline_batch_generation_block_until_done = None

    def __init__(self, provider: RecordingOpenAI) -> None:
        self.provider = provider

    def batch_provider(self) -> RecordingOpenAI:
        return self.provider

    def cost_usd(self, response: object) -> None:
        return None


def _requests(count: int, text: str = "q") -> list[GenericRequest]:
    return [GenericRequest("openai", "m", [{"role": "user", "content": f"{text}{i}"}]) for i in range(count)]


def _submit(
    tmp_path: Path, provider: RecordingOpenAI, requests: list[GenericRequest]
) -> list[dict[str, Any]]:
    async def submit() -> None:
        async with running_ledger(tmp_path / "s.state.db") as ledger:
            await prepare_offline_step(
                FakeServing(provider), step=0, requests=lambda: iter(requests), ledger=ledger
            )

    with pytest.raises(OfflineBatchGenerationNotFinished) as caught:
        asyncio.run(submit())
    return caught.value.jobs


def test_default_openai_limit_splits_120k_requests_into_50k_50k_20k(tmp_path: Path) -> None:
    assert OpenAIBatchProvider.max_requests_per_job == 50_000
    assert OpenAIBatchProvider.max_bytes_per_job == 200 * 1024 * 1024
    assert AnthropicBatchProvider.max_requests_per_job == 100_000
    assert AnthropicBatchProvider.max_bytes_per_job == 256 * 1024 * 1024
    provider = RecordingOpenAI()
    jobs = _submit(tmp_path, provider, _requests(120_000))
    assert [job["total"] for job in jobs] == [50_000, 50_000, 20_000]
    assert [payload.count(b"\n") for payload in provider.payloads] == [50_000, 50_000, 20_000]


def test_byte_limit_splits_by_size(tmp_path: Path) -> None:
    provider = RecordingOpenAI(max_bytes_per_job=10_000)
    requests = _requests(500, text="x" * 100)
    jobs = _submit(tmp_path, provider, requests)
    assert len(jobs) > 1
    assert all(len(payload) <= 10_000 for payload in provider.payloads)
    assert sum(job["total"] for job in jobs) == 500
    # Every request exactly once, keyed by its request key.
    keys = [line.split(b'"')[3].decode() for p in provider.payloads for line in p.splitlines()]
    assert sorted(keys) == sorted(r.key for r in requests)


def test_duplicate_requests_are_sent_once(tmp_path: Path) -> None:
    provider = RecordingOpenAI()
    jobs = _submit(tmp_path, provider, _requests(10) + _requests(10))
    assert [job["total"] for job in jobs] == [10]


def test_anthropic_lines_and_payload() -> None:
    provider = AnthropicBatchProvider("http://x", None, request_body)
    request = GenericRequest(
        "anthropic", "claude", [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    )
    payload = provider.chunk_payload([provider.encode_line(request)])
    import json

    body = json.loads(payload)
    (entry,) = body["requests"]
    assert entry["custom_id"] == request.key and len(request.key) == 64
    assert entry["params"]["system"] == "S" and entry["params"]["messages"] == [
        {"role": "user", "content": "U"}
    ]


def test_120k_rows_become_three_openai_jobs(make_simulator, tmp_path: Path) -> None:
    rows = 120_000
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id":{i},"q":"{i}"}}\n' for i in range(rows)))
    sim = make_simulator(batch_processing_seconds=3600)  # submission only: nothing is answered
    cache = tmp_path / "cache"
    with pytest.raises(OfflineBatchGenerationNotFinished) as caught:
        OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=1000)
    assert [job["total"] for job in caught.value.jobs] == [50_000, 50_000, 20_000]
    stats = sim.stats()
    assert (stats["files_created"], stats["batches_created"], stats["batch_requests"]) == (3, 3, rows)
    assert [job["n_requests"] for job in job_rows(cache / "off.state.db")] == [50_000, 50_000, 20_000]


def test_cache_entry_matches_generic_response_to_cache() -> None:
    import json

    from datamill.serving.offline.provider import cache_entry
    from datamill.serving.types import GenericResponse

    texts = ['a "quoted" reply', "naïve — ünïcode\n"]
    text = cache_entry(texts, 12, 34, "gpt-4o-mini")
    expected = GenericResponse(texts, 12, 34, "gpt-4o-mini", offline=True).to_cache()
    assert json.loads(text) == expected
    assert text == json.dumps(expected, ensure_ascii=False)
    restored = GenericResponse.from_cache(json.loads(text))
    assert restored.offline and restored.texts == texts
