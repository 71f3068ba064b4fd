"""``pipeline.estimate()``: what the rest of a run will send and may cost, before spending.

For each LLM step it counts the prompt tokens of the requests still to be sent: the rows after
the step's last commit, minus requests already in the request cache. A later step whose input
does not exist yet (its upstream has not run) cannot build its requests, so it is estimated:
its row count from the upstream input (every step assumed to keep its rows), its prompts from
a sample row whose missing columns are filled with text as long as the upstream completion
assumption; such steps are marked ``exact=False``.

Completion tokens are unknown until the replies come, so costs are a range: each sample is
assumed to use between ``completion_tokens[0]`` and ``completion_tokens[1]`` tokens (by default
64 and the request's ``max_tokens``, or 1024 without one). Offline (Batch API) steps get the
batch discount. Prompt tokens use tiktoken where available, else ``ceil(chars / 4)``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datamill.core.inputs import input_exists
from datamill.core.request_cache import RequestCache
from datamill.core.rowfiles import Row, count_rows, open_reader
from datamill.core.state import StateDB
from datamill.operators.base import LLMOperator, MissingInputError
from datamill.pipeline.plan import StepPlan
from datamill.serving.pricing import BATCH_DISCOUNT
from datamill.serving.tokens import estimate_prompt_tokens
from datamill.serving.types import GenericRequest

DEFAULT_COMPLETION_LOW = 64
DEFAULT_COMPLETION_HIGH = 1024


@dataclass
class StepEstimate:
    """What one step still has to send, and its cost range in USD (None without a price)."""

    index: int
    name: str
    model: str = ""
    rows: int = 0
    requests: int = 0
    cached_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens_low: int = 0
    completion_tokens_high: int = 0
    cost_low_usd: float | None = 0.0
    cost_high_usd: float | None = 0.0
    exact: bool = True
    note: str = ""


@dataclass
class PipelineEstimate:
    """Per-step estimates and their totals; ``format_text()`` renders a table."""

    steps: list[StepEstimate] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(step.prompt_tokens for step in self.steps)

    @property
    def requests(self) -> int:
        return sum(step.requests for step in self.steps)

    @property
    def cost_low_usd(self) -> float:
        return sum(step.cost_low_usd or 0.0 for step in self.steps)

    @property
    def cost_high_usd(self) -> float:
        return sum(step.cost_high_usd or 0.0 for step in self.steps)

    @property
    def exact(self) -> bool:
        return all(step.exact for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [asdict(step) for step in self.steps],
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "cost_low_usd": self.cost_low_usd,
            "cost_high_usd": self.cost_high_usd,
            "exact": self.exact,
        }

    def format_text(self) -> str:
        lines = [f"{'step':<28}{'rows':>9}{'requests':>10}{'cached':>8}{'prompt tok':>12}{'cost (USD)':>22}"]
        for s in self.steps:
            cost = "no price" if s.cost_low_usd is None else f"{s.cost_low_usd:.4f} - {s.cost_high_usd:.4f}"
            mark = "" if s.exact else " ~"
            lines.append(
                f"{f'{s.index} {s.name}':<28}{s.rows:>9}{s.requests:>10}{s.cached_requests:>8}"
                f"{s.prompt_tokens:>12}{cost:>22}{mark}"
            )
        lines.append(
            f"total: {self.prompt_tokens} prompt tokens, ${self.cost_low_usd:.4f} - ${self.cost_high_usd:.4f}"
        )
        if not self.exact:
            lines.append("~ estimated from the upstream row count: its input does not exist yet")
        return "\n".join(lines)


def estimate_plan(
    plan: list[StepPlan],
    state_path: Path,
    *,
    completion_tokens: tuple[int, int] | None = None,
) -> PipelineEstimate:
    """Estimate ``plan`` against the cache directory's state (read only; no lock taken)."""
    state = StateDB(state_path) if state_path.exists() else None
    cache = RequestCache(state_path) if state_path.exists() else None
    try:
        result = PipelineEstimate()
        expected_rows: int | None = None  # rows the previous step is expected to output in all
        ready = True  # whether this step's input is complete on disk
        for step in plan:
            stored = state.load_step(step.index) if state is not None else None
            done = bool(stored and stored.get("status") == "done")
            position = state.load_position(step.index) if state is not None else None
            estimate = StepEstimate(step.index, step.name)
            if ready and input_exists(step.input_path):
                total_rows = _count(step)
                if isinstance(step.operator, LLMOperator) and not done:
                    _estimate_exact(step, estimate, position, cache, completion_tokens)
            else:
                total_rows = expected_rows or 0
                if isinstance(step.operator, LLMOperator) and not done:
                    _estimate_from_upstream(step, plan, estimate, total_rows, position, completion_tokens)
            result.steps.append(estimate)
            expected_rows = total_rows
            ready = done
        return result
    finally:
        if cache is not None:
            cache.close()
        if state is not None:
            state.close()


def _count(step: StepPlan) -> int:
    try:
        return count_rows(step.input_path, step.input_format) or 0
    except Exception:  # an unreadable file is reported by the run itself
        return 0


def _estimate_exact(
    step: StepPlan,
    estimate: StepEstimate,
    position: Any,
    cache: RequestCache | None,
    completion_tokens: tuple[int, int] | None,
) -> None:
    op = step.operator
    assert isinstance(op, LLMOperator)
    reader = open_reader(step.input_path, step.input_format)
    start = position.in_position if position is not None else 0
    for row, _ in reader.iter_from(start):
        estimate.rows += 1
        for request in _requests(op, row, step.call):
            if cache is not None and cache.contains(request.key):
                estimate.cached_requests += 1
                continue
            _add_request(estimate, request, completion_tokens)
    _price(op, estimate)


def _estimate_from_upstream(
    step: StepPlan,
    plan: list[StepPlan],
    estimate: StepEstimate,
    total_rows: int,
    position: Any,
    completion_tokens: tuple[int, int] | None,
) -> None:
    op = step.operator
    assert isinstance(op, LLMOperator)
    estimate.exact = False
    estimate.rows = max(0, total_rows - (position.in_rows if position is not None else 0))
    estimate.note = "estimated from the upstream row count"
    filler_tokens = (completion_tokens or (DEFAULT_COMPLETION_LOW, DEFAULT_COMPLETION_HIGH))[0]
    sample = _sample_row(plan, step, op, "x" * (4 * filler_tokens))
    requests = _requests(op, sample, step.call) if sample is not None else []
    for request in requests:
        one = StepEstimate(step.index, step.name)
        _add_request(one, request, completion_tokens)
        estimate.requests += one.requests * estimate.rows
        estimate.prompt_tokens += one.prompt_tokens * estimate.rows
        estimate.completion_tokens_low += one.completion_tokens_low * estimate.rows
        estimate.completion_tokens_high += one.completion_tokens_high * estimate.rows
        estimate.model = one.model
    _price(op, estimate)


def _sample_row(plan: list[StepPlan], step: StepPlan, op: LLMOperator, filler: str) -> Row | None:
    """The first row of the nearest existing input, with the step's missing columns filled."""
    for earlier in reversed(plan[: step.index + 1]):
        if input_exists(earlier.input_path):
            try:
                first = next(
                    itertools.islice(open_reader(earlier.input_path, earlier.input_format).iter_from(0), 1)
                )
            except StopIteration:
                return None
            row = dict(first[0])
            for key in op.input_keys(step.call):
                row.setdefault(key, filler)
            for later in plan[earlier.index : step.index]:
                for key in later.operator.output_keys(later.call):
                    row.setdefault(key, filler)
            return row
    return None


def _requests(op: LLMOperator, row: Row, call: dict[str, Any]) -> list[GenericRequest]:
    try:
        return op.build_requests(row, call)
    except MissingInputError:
        return []


def _add_request(
    estimate: StepEstimate, request: GenericRequest, completion_tokens: tuple[int, int] | None
) -> None:
    samples = int(request.params.get("n") or 1)
    max_tokens = request.params.get("max_tokens") or request.params.get("max_completion_tokens")
    low, high = completion_tokens or (
        min(DEFAULT_COMPLETION_LOW, int(max_tokens or DEFAULT_COMPLETION_LOW)),
        int(max_tokens or DEFAULT_COMPLETION_HIGH),
    )
    estimate.model = request.model
    estimate.requests += 1
    estimate.prompt_tokens += estimate_prompt_tokens(request.messages, request.model)
    estimate.completion_tokens_low += low * samples
    estimate.completion_tokens_high += high * samples


def _price(op: LLMOperator, estimate: StepEstimate) -> None:
    serving = op.llm_serving
    price = getattr(serving, "price", None)
    if price is None:
        estimate.cost_low_usd = estimate.cost_high_usd = None
        return
    factor = BATCH_DISCOUNT if getattr(serving, "use_offline_batch_generation", False) else 1.0
    estimate.cost_low_usd = price.cost(estimate.prompt_tokens, estimate.completion_tokens_low) * factor
    estimate.cost_high_usd = price.cost(estimate.prompt_tokens, estimate.completion_tokens_high) * factor
