"""``pipeline.estimate()``: prompt tokens still to send and a cost range, before spending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.errors import BudgetExceededError
from datamill.serving.pricing import find_price
from datamill.serving.tokens import heuristic_tokens
from datamill.simulator import SimulatorHandle, run_simulator
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


# --- accuracy: the expected cost of a fresh run against what the simulator billed -------------

WORDS = (
    "the committee reviewed quarterly figures and decided to postpone expansion of northern "
    "warehouse until spring while engineers measured how long each shipment waited at the dock "
    "before anyone signed for it because customers asked why deliveries arrived late"
).split()


#: Batch jobs that validate, run and finalise within a fraction of a second.
FAST_BATCHES = {
    "batch_validating_seconds": 0.01,
    "batch_processing_seconds": 0.1,
    "batch_finalizing_seconds": 0.01,
}


def write_sentences(path: Path, count: int) -> Path:
    """Rows of ordinary English text of varied length (20 to 90 words)."""
    lines = []
    for i in range(count):
        length = 20 + (i * 37) % 71
        text = " ".join(WORDS[(i + k * 7) % len(WORDS)] for k in range(length))
        lines.append(json.dumps({"id": i, "text": text}))
    path.write_text("\n".join(lines) + "\n")
    return path


class RewriteAndJudge(BatchedPipelineABC):
    """Two LLM steps; ``offline=True`` sends both through the Batch API (waiting for the jobs)."""

    def __init__(self, input_path: Path, cache_path: Path, sim: SimulatorHandle, *, offline: bool) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(input_path), cache_path=str(cache_path), file_name_prefix="rj")
        self.llm = APILLMServing_request(
            sim.openai_base + "/chat/completions",
            "gpt-4o-mini",
            max_workers=8,
            retry=FAST_RETRY,
            use_offline_batch_generation=offline,
            offline_batch_generation_block_until_done=0.05 if offline else None,
        )
        self.rewrite = PromptedGenerator(self.llm, system_prompt="Be concise.", user_prompt="Rewrite: ")
        self.judge = PromptedGenerator(self.llm, user_prompt="Is this clear? ")

    def forward(self) -> None:
        self.rewrite.run(self.storage.step(), input_key="text", output_key="rewritten")
        self.judge.run(self.storage.step(), input_key="rewritten", output_key="verdict")


def billed_usd(stats: dict[str, int], *, offline: bool) -> float:
    price = find_price("gpt-4o-mini", "openai")
    assert price is not None
    return price.cost(stats["prompt_tokens"], stats["completion_tokens"], offline=offline)


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_a_fresh_runs_expected_cost_is_within_20_percent_of_the_billing(
    offline: bool, tmp_path: Path
) -> None:
    rows = 80
    with run_simulator(**FAST_BATCHES) as sim:
        pipeline = RewriteAndJudge(
            write_sentences(tmp_path / "in.jsonl", rows), tmp_path / "cache", sim, offline=offline
        )
        estimate = pipeline.estimate()
        assert sim.stats()["requests"] == 0 and sim.stats()["batch_requests"] == 0
        first, second = estimate.steps
        assert first.exact and not second.exact and first.offline is offline
        assert (first.requests, second.requests, estimate.cached_requests) == (rows, rows, 0)
        assert first.completion_basis == "from the prompt"

        summary = pipeline.forward(batch_size=16)
        stats = sim.stats()
    assert stats["answered" if not offline else "batch_answered"] == 2 * rows
    billed = billed_usd(stats, offline=offline)
    assert estimate.cost_usd is not None and summary.cost_usd is not None
    assert summary.cost_usd == pytest.approx(billed, rel=1e-6)
    assert abs(estimate.cost_usd - billed) <= 0.2 * billed, (estimate.cost_usd, billed)
    assert estimate.cost_low_usd <= billed <= estimate.cost_high_usd
    tokens = estimate.prompt_tokens + estimate.completion_tokens
    assert abs(tokens - stats["prompt_tokens"] - stats["completion_tokens"]) <= 0.2 * tokens

    after = pipeline.estimate()
    assert after.requests == 0 and after.cost_usd == 0


def test_the_rest_of_a_stopped_run_is_estimated_from_its_observed_replies(sim, tmp_path: Path) -> None:
    rows = 80
    pipeline = RewriteAndJudge(
        write_sentences(tmp_path / "in.jsonl", rows), tmp_path / "cache", sim, offline=False
    )
    with pytest.raises(BudgetExceededError):
        pipeline.forward(batch_size=8, max_cost_usd=1e-4)
    rest = pipeline.estimate()
    first = rest.steps[0]
    assert first.completion_basis.startswith("observed (") and 0 < first.requests < rows
    sim.reset()
    pipeline.forward(batch_size=8)
    stats = sim.stats()
    assert stats["answered"] == rest.steps[0].requests + rows  # step 0's rest exactly, then all of step 1
    billed = billed_usd(stats, offline=False)
    # The budget stopped the run before step 0 committed a row, so step 1 is estimated from its
    # prompt alone (no observed replies of its own): a looser bound than a fresh run's 20%.
    assert rest.cost_usd is not None and abs(rest.cost_usd - billed) <= 0.25 * billed, (rest.cost_usd, billed)


class FirstStepOnly(TwoStepPipeline):
    def forward(self) -> None:
        self.answer.run(self.storage.step(), input_key="text", output_key="answer")


class AskingAgain(TwoStepPipeline):
    """Step two asks what step one asked: its replies are in the cache, already paid for."""

    def forward(self) -> None:
        self.answer.run(self.storage.step(), input_key="text", output_key="answer")
        PromptedGenerator(self.llm, user_prompt="Say: ").run(
            self.storage.step(), input_key="text", output_key="again"
        )


def test_requests_already_paid_for_are_reported_and_repeats_counted_once(sim, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"same text {i % 5}"}) + "\n" for i in range(20)))
    before = TwoStepPipeline(source, tmp_path / "cache", sim.openai_base).estimate()
    assert (before.steps[0].requests, before.steps[0].repeated_requests) == (5, 15)
    FirstStepOnly(source, tmp_path / "cache", sim.openai_base).forward(batch_size=4)
    assert sim.stats()["answered"] == 5

    estimate = AskingAgain(source, tmp_path / "cache", sim.openai_base).estimate()
    second = estimate.steps[1]
    assert (second.requests, second.cached_requests, second.cost_usd) == (0, 20, 0.0)
    assert "20 request(s) are already paid for" in estimate.format_text()
