"""Limits belong to the serving: every operator (every request) using it shares them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from helpers.ledger_runs import running_ledger

from datamill import APILLMServing_request
from datamill.serving.dispatch import RequestDispatcher
from datamill.serving.tokens import estimate_prompt_tokens, heuristic_tokens
from tests.serving.serving_helpers import FAST_RETRY


def test_two_operators_on_one_serving_share_its_rpm(sim, tmp_path: Path) -> None:
    serving = APILLMServing_request(
        sim.openai_base, "gpt-4o-mini", max_workers=64, rpm=1200, retry=FAST_RETRY
    )

    async def run() -> float:
        await serving.start()
        async with running_ledger(tmp_path / "s.db") as ledger:
            dispatcher = RequestDispatcher(ledger)
            try:
                started = time.monotonic()
                futures = [
                    dispatcher.submit(
                        serving, serving.build_request([{"role": "user", "content": f"{op} {i}"}])
                    )
                    for op in ("answer", "judge")
                    for i in range(30)
                ]
                await asyncio.gather(*futures)
                return time.monotonic() - started
            finally:
                await dispatcher.close()
                await serving.close()

    elapsed = asyncio.run(run())
    # 60 requests at 20/s with a burst of 20: two operators together, not 20/s each
    assert elapsed >= 1.8, elapsed
    assert sim.stats()["answered"] == 60


def test_token_estimates_fall_back_to_the_heuristic_offline() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x" * 400}]
    unknown = estimate_prompt_tokens(messages, "some-local-model")
    assert unknown == 3 + (4 + heuristic_tokens("Be brief.")) + (4 + 100)
    known = estimate_prompt_tokens(messages, "gpt-4o")  # tiktoken if its file is cached, else the same
    assert 10 < known <= unknown + 50


def test_a_serving_never_has_more_than_max_workers_requests_on_the_wire(sim, tmp_path: Path) -> None:
    """The send lane runs at most ``max_workers`` workers, and keeps all of them busy."""
    sim.configure(latency_mean=0.02)
    serving = APILLMServing_request(sim.openai_base, "gpt-4o-mini", max_workers=4, retry=FAST_RETRY)

    async def run() -> list[str]:
        await serving.start()
        async with running_ledger(tmp_path / "s.db") as ledger:
            dispatcher = RequestDispatcher(ledger)
            try:
                futures = [
                    dispatcher.submit(serving, serving.build_request([{"role": "user", "content": f"q {i}"}]))
                    for i in range(40)
                ]
                return [response.text for response in await asyncio.gather(*futures)]
            finally:
                await dispatcher.close()
                await serving.close()

    texts = asyncio.run(run())
    assert len(set(texts)) == 40
    stats = sim.stats()
    assert stats["peak_in_flight"] == 4, stats
    assert stats["answered"] == 40 and stats["in_flight"] == 0
