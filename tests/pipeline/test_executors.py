"""The executor seam: the runner hands a local step's batches to an executor and commits what
comes back, in input order; any executor gives the rows the in-process one gives."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import read_jsonl
from ray_pipeline import FourStepPipeline, expected_ids, write_input

from datamill.errors import ConfigError
from datamill.operators.base import Operator, Outcome
from datamill.pipeline.executors import BatchInput, Executor, InProcessExecutor
from datamill.serving.base import LLMServingABC

ROWS = 90


class ThreadExecutor:
    """Batches computed on a thread pool, several at once, finishing out of order."""

    def __init__(self, in_flight: int) -> None:
        self.in_flight = in_flight
        self.calls: list[str] = []
        self.most_in_flight = 0
        self._pool: ThreadPoolExecutor | None = None

    async def start(self, servings: Sequence[LLMServingABC]) -> None:
        self.calls.append("start")
        self._pool = ThreadPoolExecutor(max_workers=self.in_flight)

    async def close(self) -> None:
        self.calls.append("close")
        assert self._pool is not None
        self._pool.shutdown()

    async def map_batches(
        self, op: Operator, call: dict[str, Any], batches: Iterable[BatchInput], *, label: str
    ) -> AsyncGenerator[tuple[BatchInput, list[Outcome]], None]:
        loop = asyncio.get_running_loop()
        pending: deque[tuple[BatchInput, asyncio.Future[list[Outcome]]]] = deque()
        for batch in batches:
            future = loop.run_in_executor(self._pool, op.process_rows, batch.rows, batch.first_row, call)
            pending.append((batch, future))
            self.most_in_flight = max(self.most_in_flight, len(pending))
            if len(pending) >= self.in_flight:
                head, done = pending.popleft()
                yield head, await done
        while pending:
            head, done = pending.popleft()
            yield head, await done


def test_any_executor_commits_the_rows_of_the_in_process_one_in_input_order(
    simulator: Any, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    url = simulator.openai_base + "/chat/completions"
    local = FourStepPipeline(source, tmp_path / "local", url)
    local.forward(batch_size=4)
    threads = ThreadExecutor(in_flight=3)
    assert isinstance(threads, Executor)
    other = FourStepPipeline(source, tmp_path / "threads", url)
    other.forward(batch_size=4, executor=threads)

    assert threads.calls == ["start", "close"] and threads.most_in_flight == 3
    ours = [read_jsonl(path) for path in other.step_paths()]
    assert ours == [read_jsonl(path) for path in local.step_paths()]
    assert [[row["id"] for row in rows] for rows in ours] == expected_ids(ROWS)


def test_a_pipeline_attribute_chooses_the_executor_and_forward_overrides_it(
    simulator: Any, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", 10)
    pipeline = FourStepPipeline(source, tmp_path / "cache", simulator.openai_base + "/chat/completions")
    pipeline.executor = ThreadExecutor(in_flight=2)
    pipeline.forward(batch_size=3)
    assert pipeline.executor.calls == ["start", "close"]
    pipeline.forward(batch_size=3, resume_from_last=False, executor=InProcessExecutor())
    assert pipeline.executor.calls == ["start", "close"]


@pytest.mark.parametrize(
    ("executor", "message"),
    [("spark", r"unknown executor 'spark': use one of \['in-process', 'ray'\]"), (42, "got int")],
)
def test_an_unknown_executor_is_a_config_error(tmp_path: Path, executor: Any, message: str) -> None:
    source = write_input(tmp_path / "in.jsonl", 3)
    pipeline = FourStepPipeline(source, tmp_path / "cache", "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match=message):
        pipeline.forward(executor=executor)
    assert not (tmp_path / "cache" / "four_step1.jsonl").exists()
