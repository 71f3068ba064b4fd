"""Token and cost accounting from ``usage`` and the price catalogue, and the ``max_cost_usd`` budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamill import APILLMServing_request
from datamill.errors import BudgetExceededError, ConfigError
from datamill.serving.pricing import BATCH_DISCOUNT, find_price, resolve_price
from datamill.serving.types import GenericResponse
from tests.serving.serving_helpers import FAST_RETRY, OneStepPipeline, read_jsonl, write_rows


def test_price_override_and_the_batch_discount() -> None:
    serving = APILLMServing_request(
        "http://127.0.0.1:1/v1", "gpt-4o", price_per_million={"input": 1.0, "output": 2.0}
    )
    online = GenericResponse(["x"], prompt_tokens=1_000_000, completion_tokens=500_000)
    offline = GenericResponse(["x"], prompt_tokens=1_000_000, completion_tokens=500_000, offline=True)
    assert serving.cost_usd(online) == pytest.approx(2.0)
    assert serving.cost_usd(offline) == pytest.approx(2.0 * BATCH_DISCOUNT)
    with pytest.raises(ConfigError, match="price_per_million"):
        resolve_price("x", {"input": 1.0})


def test_cost_figures_equal_the_simulators_usage_times_the_price_table(sim, tmp_path: Path) -> None:
    serving = APILLMServing_request(sim.openai_base, "gpt-4o-mini", max_workers=8, retry=FAST_RETRY)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 40), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=8)
    stats = sim.stats()
    step = summary.steps[0]
    assert (step.prompt_tokens, step.completion_tokens) == (
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )
    price = find_price("gpt-4o-mini", "openai")
    assert price is not None
    expected = (stats["prompt_tokens"] * price.input + stats["completion_tokens"] * price.output) / 1e6
    assert summary.cost_usd == pytest.approx(expected, rel=1e-9) and expected > 0


def test_budget_stops_after_committing_in_flight_batches_and_resumes_with_a_higher_budget(
    sim, tmp_path: Path
) -> None:
    rows = 120
    reference = OneStepPipeline(
        write_rows(tmp_path / "in.jsonl", rows),
        tmp_path / "reference",
        APILLMServing_request(sim.openai_base, "gpt-4o", max_workers=4, retry=FAST_RETRY),
    )
    full_cost = reference.forward(batch_size=10).cost_usd
    sim.reset()

    serving = APILLMServing_request(sim.openai_base, "gpt-4o", max_workers=4, retry=FAST_RETRY)
    pipeline = OneStepPipeline(tmp_path / "in.jsonl", tmp_path / "cache", serving)
    with pytest.raises(BudgetExceededError, match="max_cost_usd") as caught:
        pipeline.forward(batch_size=10, max_cost_usd=full_cost / 3)
    stopped = caught.value.summary
    assert stopped is not None and stopped.status == "budget_exceeded"
    committed = len(read_jsonl(pipeline.step_paths()[-1]))
    assert 0 < committed < rows and committed == stopped.steps[0].rows_out
    per_row = full_cost / rows
    # Stopped before passing the cap, short of it by at most the requests it would have had in flight.
    assert full_cost / 3 - 6 * per_row <= stopped.cost_usd <= full_cost / 3 + 4 * per_row
    answered_before = sim.stats()["answered"]
    assert answered_before < rows

    with pytest.raises(BudgetExceededError):  # the same budget: stops before sending anything
        pipeline.forward(batch_size=10, max_cost_usd=full_cost / 3)
    assert sim.stats()["answered"] == answered_before

    summary = pipeline.forward(batch_size=7, max_cost_usd=full_cost * 2)
    stats = sim.stats(detail=True)
    out = read_jsonl(pipeline.step_paths()[-1])
    assert sorted(r["id"] for r in out) == list(range(rows))
    assert stats["answered"] == rows and stats["duplicates"] == 0 and stats["duplicate_client_keys"] == []
    assert summary.total_cost_usd == pytest.approx(full_cost, rel=1e-9)  # every run together
    assert summary.cost_usd == pytest.approx(full_cost - stopped.cost_usd, rel=1e-9)  # this run's share


def test_budget_over_a_model_without_a_price_is_a_config_error(sim, tmp_path: Path) -> None:
    serving = APILLMServing_request(sim.openai_base, "my-finetune", max_workers=2, retry=FAST_RETRY)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 3), tmp_path / "cache", serving)
    with pytest.raises(ConfigError, match="price_per_million"):
        pipeline.forward(max_cost_usd=1.0)
    assert sim.stats()["requests"] == 0
