"""``pipeline.estimate()``: prompt tokens still to send and a cost range, before spending."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.errors import BudgetExceededError
from datamill.serving.tokens import heuristic_tokens
from tests.serving.serving_helpers import FAST_RETRY, write_rows


class TwoStepPipeline(BatchedPipelineABC):
    def __init__(self, input_path: Path, cache_path: Path, api_url: str) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(input_path), cache_path=str(cache_path), file_name_prefix="two")
        self.llm = APILLMServing_request(api_url, "gpt-4o-mini", max_workers=4, retry=FAST_RETRY)
        self.answer = PromptedGenerator(self.llm, user_prompt="Say: ")
        self.judge = PromptedGenerator(self.llm, user_prompt="Judge: ")

    def forward(self) -> None:
        self.answer.run(self.storage.step(), input_key="text", output_key="answer")
        self.judge.run(self.storage.step(), input_key="answer", output_key="verdict")


def test_estimate_before_a_run_counts_step_one_exactly_and_later_steps_from_the_row_count(
    sim, tmp_path: Path
) -> None:
    rows = 30
    pipeline = TwoStepPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", sim.openai_base)
    estimate = pipeline.estimate(completion_tokens=(0, 50))
    first, second = estimate.steps
    assert first.exact and (first.rows, first.requests, first.cached_requests) == (rows, rows, 0)
    assert first.prompt_tokens >= sum(heuristic_tokens(f"Say: row number {i}") for i in range(rows))
    assert not second.exact and second.rows == rows and second.requests == rows
    assert first.cost_low_usd is not None and 0 < first.cost_low_usd < first.cost_high_usd
    assert estimate.cost_low_usd < estimate.cost_high_usd and not estimate.exact
    assert "~" in estimate.format_text()
    assert sim.stats()["requests"] == 0

    summary = pipeline.forward(batch_size=8)
    actual = summary.steps[0]
    assert first.prompt_tokens >= actual.prompt_tokens  # the heuristic errs on the high side
    assert first.cost_low_usd <= actual.cost_usd <= first.cost_high_usd
    after = pipeline.estimate()
    assert after.requests == 0 and after.prompt_tokens == 0 and after.cost_high_usd == 0


def test_estimate_after_a_budget_stop_counts_only_the_rows_still_to_send(sim, tmp_path: Path) -> None:
    rows = 60
    pipeline = TwoStepPipeline(write_rows(tmp_path / "in.jsonl", rows), tmp_path / "cache", sim.openai_base)
    full = pipeline.estimate(completion_tokens=(0, 50))
    reference = TwoStepPipeline(tmp_path / "in.jsonl", tmp_path / "reference", sim.openai_base)
    first_step_cost = reference.forward(batch_size=5).steps[0].cost_usd
    with pytest.raises(BudgetExceededError) as caught:
        pipeline.forward(batch_size=5, max_cost_usd=first_step_cost / 2)
    committed = caught.value.summary.steps[0].rows_in
    assert 0 < committed < rows
    partial = pipeline.estimate(completion_tokens=(0, 50))
    assert partial.steps[0].rows == rows - committed
    assert partial.steps[0].requests + partial.steps[0].cached_requests == rows - committed
    assert partial.steps[0].prompt_tokens < full.steps[0].prompt_tokens
