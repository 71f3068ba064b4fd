"""Serving against a misbehaving provider: a 429 storm, 5xx, junk, dropped connections, a bad key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datamill import APILLMServing_request
from datamill.errors import ServingError
from datamill.serving.retry import RetryPolicy
from tests.serving.serving_helpers import FAST_RETRY, OneStepPipeline, read_jsonl, write_rows


def test_429_storm_paces_to_the_rpm_limit_with_few_refusals(sim, tmp_path: Path) -> None:
    rows = 300
    sim.configure(rpm_limit=600, rpm_burst=10, latency_mean=0.02)
    serving = APILLMServing_request(
        sim.openai_base, "gpt-4o-mini", max_workers=256, rpm=600, retry=FAST_RETRY
    )
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", serving)
    started = time.monotonic()
    summary = pipeline.forward(batch_size=32)
    elapsed = time.monotonic() - started
    stats = sim.stats()
    assert summary.rows_failed == 0 and len(read_jsonl(pipeline.step_paths()[-1])) == rows
    achieved_rpm = stats["answered"] / elapsed * 60
    assert abs(achieved_rpm - 600) <= 0.15 * 600, achieved_rpm
    assert stats["rate_limited"] <= 0.05 * stats["requests"], stats
    assert summary.steps[0].retries == stats["rate_limited"]


def test_unpaced_serving_adopts_the_limit_a_429_states_and_completes_every_row(sim, tmp_path: Path) -> None:
    rows = 200
    sim.configure(rpm_limit=1200, rpm_burst=20)
    serving = APILLMServing_request(sim.openai_base, "gpt-4o-mini", max_workers=64, retry=FAST_RETRY)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=32)
    stats = sim.stats()
    assert summary.rows_failed == 0 and stats["answered"] == rows
    # the first wave is refused (64 sent into a burst of 20); after it the serving paces itself
    assert stats["rate_limited"] <= 64 + 0.05 * rows, stats


def test_5xx_malformed_and_dropped_connections_are_retried_until_every_row_completes(
    sim, tmp_path: Path
) -> None:
    rows = 300
    sim.configure(failure_rate=0.10, malformed_rate=0.02, drop_rate=0.02, seed=7)
    serving = APILLMServing_request(sim.openai_base, "gpt-4o-mini", max_workers=32, retry=FAST_RETRY)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=16)
    stats = sim.stats(detail=True)
    out = read_jsonl(pipeline.step_paths()[-1])
    assert summary.rows_failed == 0 and sorted(r["id"] for r in out) == list(range(rows))
    assert all(r["reply"].endswith(f"Say: row number {r['id']}") for r in out)
    faults = stats["server_errors"] + stats["malformed"] + stats["dropped"]
    assert faults > 0 and stats["dropped"] > 0 and stats["malformed"] > 0
    assert summary.steps[0].retries == faults
    assert stats["duplicates"] == 0 and stats["duplicate_client_keys"] == []


def test_a_401_fails_fast_with_the_providers_message_and_no_retries(sim, tmp_path: Path) -> None:
    wrong_key = "sk-test-WRONG-key-0123456789abcdef"
    sim.configure(require_api_key="sk-the-right-key-000000000000")
    serving = APILLMServing_request(
        sim.openai_base, "gpt-4o-mini", max_workers=4, api_key=wrong_key, retry=RetryPolicy(max_attempts=5)
    )
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 50), tmp_path / "cache", serving)
    started = time.monotonic()
    with pytest.raises(ServingError) as caught:
        pipeline.forward(batch_size=10)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    assert wrong_key not in message
    stats = sim.stats()
    assert stats["unauthorized"] == stats["requests"] <= 4 + 4  # at most the first requests in flight
    assert stats["answered"] == 0


def test_a_400_is_not_retried_and_fails_the_row_with_the_providers_message(sim, tmp_path: Path) -> None:
    serving = APILLMServing_request(
        sim.openai_base,
        "gpt-4o-mini",
        max_workers=4,
        retry=FAST_RETRY,
        params={"response_format": {"type": "json_schema"}},
    )
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 3), tmp_path / "cache", serving)
    pipeline.allowed_failure_fraction = 1.0
    summary = pipeline.forward(batch_size=10)
    assert summary.rows_failed == 3
    assert sim.stats()["requests"] == 3
    assert "HTTP 400" in summary.steps[0].failure_samples[0][1]


def test_timeouts_are_retried_within_the_bound_then_fail_the_row_saying_so(sim, tmp_path: Path) -> None:
    sim.configure(latency_mean=0.3)
    serving = APILLMServing_request(
        sim.openai_base,
        "gpt-4o-mini",
        max_workers=4,
        timeout=0.1,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01),
    )
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 2), tmp_path / "cache", serving)
    pipeline.allowed_failure_fraction = 1.0
    summary = pipeline.forward(batch_size=2)
    assert summary.rows_failed == 2 and summary.steps[0].retries == 4
    error = summary.steps[0].failure_samples[0][1]
    assert "gave up after 3 attempts" in error and "did not answer within 0.1s" in error
    time.sleep(0.35)  # let the simulator finish the abandoned replies before it shuts down
