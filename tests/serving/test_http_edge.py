"""The one HTTP edge of the online and Batch API paths: every transport failure is a datamill
error that says whether a retry can help, and a timed-out request is retried, not fatal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from datamill.errors import InvalidResponseError, ServingError
from datamill.serving.http import HTTPStatusError, open_session, send
from datamill.serving.openai_compat import APILLMServing_request, OpenAIBatchProvider
from datamill.serving.retry import RetryPolicy
from tests.serving.serving_helpers import OneStepPipeline, read_jsonl, write_rows

JOB = {"id": "batch_1", "status": "in_progress", "request_counts": {"total": 3, "completed": 1, "failed": 0}}
COMPLETION = {
    "model": "gpt-4o-mini",
    "choices": [{"message": {"role": "assistant", "content": "fine"}}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1},
}


class FlakyProvider:
    """A loopback provider whose first answer to each route is late (or broken), later ones on time."""

    def __init__(self, first: str) -> None:
        self.first = first
        self.calls: dict[str, int] = {}

    async def answer(self, request: web.Request) -> web.StreamResponse:
        route = request.path
        self.calls[route] = self.calls.get(route, 0) + 1
        if self.calls[route] == 1 and self.first == "late":
            await asyncio.sleep(2.0)
        if self.calls[route] == 1 and self.first == "not-json":
            return web.Response(text="<html>gateway</html>", content_type="text/html")
        if self.calls[route] == 1 and self.first == "503":
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return web.json_response(COMPLETION if route.endswith("/completions") else JOB)


@pytest.fixture
async def flaky(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FlakyProvider, str]]:
    provider = FlakyProvider(getattr(request, "param", "late"))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", provider.answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield provider, f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_a_timeout_is_a_retryable_serving_error_naming_the_call(flaky) -> None:
    _, base = flaky
    async with open_session({}, 2, 0.3) as session:
        with pytest.raises(
            ServingError, match=r"GET .*/v1/batches/batch_1 did not answer within 0.3s"
        ) as caught:
            await send(session, "GET", base + "/batches/batch_1", timeout=0.3)
        assert caught.value.retryable
        assert (
            json.loads(await send(session, "GET", base + "/batches/batch_1", timeout=0.3))["id"] == "batch_1"
        )


async def test_a_refused_connection_is_retryable_and_a_4xx_is_not() -> None:
    async with open_session({}, 2, 1.0) as session:
        with pytest.raises(ServingError, match="connection to http://127.0.0.1:9/x failed") as caught:
            await send(session, "GET", "http://127.0.0.1:9/x", timeout=1.0)
    assert caught.value.retryable and not isinstance(caught.value, HTTPStatusError)


@pytest.mark.parametrize("flaky", ["late", "not-json", "503"], indirect=True)
async def test_the_batch_api_client_retries_a_timeout_a_malformed_body_and_a_503(flaky) -> None:
    server, base = flaky
    client = OpenAIBatchProvider(base, None, lambda request: {}, timeout=0.3)
    try:
        job = await client.get_job("batch_1")
    finally:
        await client.close()
    assert (job.id, job.status, job.completed) == ("batch_1", "in_progress", 1)
    assert server.calls == {"/v1/batches/batch_1": 2}


@pytest.mark.parametrize("flaky", ["not-json"], indirect=True)
async def test_a_malformed_batch_api_body_is_an_invalid_response_once_attempts_run_out(flaky) -> None:
    _, base = flaky
    client = OpenAIBatchProvider(base, None, lambda request: {}, timeout=1.0)
    try:
        with pytest.raises(InvalidResponseError, match="not JSON"):
            await client.request("GET", "/batches/batch_1", attempts=1)
    finally:
        await client.close()


def test_an_online_request_that_times_out_is_retried_and_the_row_completes(tmp_path: Path) -> None:
    async def serve_and_run() -> tuple[FlakyProvider, object]:
        provider = FlakyProvider("late")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", provider.answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        serving = APILLMServing_request(
            f"http://127.0.0.1:{port}/v1",
            "gpt-4o-mini",
            2,
            timeout=0.3,
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
        )
        pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 1), tmp_path / "cache", serving)
        try:
            return provider, await asyncio.to_thread(pipeline.forward)
        finally:
            await runner.cleanup()

    provider, summary = asyncio.run(serve_and_run())
    assert provider.calls == {"/v1/chat/completions": 2}
    assert summary.steps[0].retries == 1 and summary.rows_failed == 0  # type: ignore[attr-defined]
    assert [row["reply"] for row in read_jsonl(tmp_path / "cache" / "one_step1.jsonl")] == ["fine"]
