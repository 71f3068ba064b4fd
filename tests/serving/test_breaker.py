"""The circuit breaker: a failure no row can fix stops the run within seconds, with one message.

Each case runs 5,000 rows through the real engine against the simulator (or a closed port,
or a host name that cannot resolve) with the default retry policy, and checks that the run
stops quickly, having sent about one round of requests, and names the URL.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from datamill import APILLMServing_request
from datamill.errors import ConfigError, ServingStoppedError
from datamill.operators.generate import SamplingGenerator
from datamill.simulator import SimulatorHandle
from tests.serving.serving_helpers import FAST_RETRY, OneStepPipeline, read_jsonl, write_rows

ROWS = 5_000
WORKERS = 16


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_until_stopped(tmp_path: Path, serving: APILLMServing_request) -> tuple[ServingStoppedError, float]:
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", ROWS), tmp_path / "cache", serving)
    started = time.monotonic()
    with pytest.raises(ServingStoppedError) as caught:
        pipeline.forward(batch_size=64)
    return caught.value, time.monotonic() - started


def test_a_closed_port_stops_the_run_and_names_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    error, elapsed = run_until_stopped(tmp_path, APILLMServing_request(url, max_workers=WORKERS))
    assert elapsed <= 15
    assert error.cause == "connection refused"
    assert error.failures <= WORKERS + 10
    assert f"{url}/chat/completions" in str(error) and "host and port" in str(error)


def test_an_unknown_host_stops_the_run(tmp_path: Path) -> None:
    url = "http://datamill-no-such-host.invalid/v1/chat/completions"
    serving = APILLMServing_request(url, max_workers=WORKERS, api_key="sk-test-not-a-real-key")
    error, elapsed = run_until_stopped(tmp_path, serving)
    assert elapsed <= 15
    assert error.cause == "DNS lookup failed"
    assert error.failures <= WORKERS + 10
    assert url in str(error) and "host name" in str(error)


def test_a_wrong_path_stops_the_run_after_one_round(tmp_path: Path, sim: SimulatorHandle) -> None:
    url = sim.base_url + "/v2/chat/completions"
    error, elapsed = run_until_stopped(tmp_path, APILLMServing_request(url, max_workers=WORKERS))
    assert elapsed <= 15
    assert error.cause == "HTTP 404"
    assert sim.stats()["requests"] <= WORKERS + 10
    assert url in str(error) and "/v1/chat/completions" in str(error)


def test_an_unknown_model_stops_the_run(tmp_path: Path, sim: SimulatorHandle) -> None:
    sim.configure(reject_unknown_models=True)
    serving = APILLMServing_request(sim.openai_base, "gpt-no-such-model", max_workers=WORKERS)
    error, elapsed = run_until_stopped(tmp_path, serving)
    assert elapsed <= 15
    assert error.cause == "model not found"
    assert sim.stats()["requests"] <= WORKERS + 10
    assert "gpt-no-such-model" in str(error) and sim.openai_base in str(error)


def test_a_url_naming_another_endpoint_is_refused_not_rewritten() -> None:
    with pytest.raises(ConfigError, match="/v1/chat/completions"):
        APILLMServing_request("http://127.0.0.1:9/v1/chat/completion")


class SometimesEmptyGenerator(SamplingGenerator):
    """Sends no messages for every 20th row: the provider answers that row 400."""

    def build_messages(self, row: dict[str, Any], call: dict[str, Any]) -> list[dict[str, Any]]:
        if int(row["id"]) % 20 == 0:
            return []
        return [{"role": "user", "content": str(row["text"])}]


class RowSpecificPipeline(OneStepPipeline):
    def __init__(self, input_path: Path, cache_path: Path, serving: APILLMServing_request) -> None:
        super().__init__(input_path, cache_path, serving)
        self.gen = SometimesEmptyGenerator(serving)
        self.allowed_failure_fraction = 0.06


def test_row_specific_400s_and_a_recovering_5xx_burst_keep_per_row_handling(
    tmp_path: Path, sim: SimulatorHandle
) -> None:
    sim.configure(failure_rate=0.1)
    serving = APILLMServing_request(sim.openai_base, max_workers=WORKERS, retry=FAST_RETRY)
    pipeline = RowSpecificPipeline(write_rows(tmp_path / "in.jsonl", 1_000), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=64)
    assert summary.rows_failed == 50
    assert len(read_jsonl(pipeline.step_paths()[0])) == 950
    sample = json.dumps(summary.steps[0].failure_samples)
    assert "400" in sample
