"""``pipeline.estimate()``: what the rest of a run will send and is expected to cost, before spending.

For each LLM step it builds the requests still to be sent: the rows after the step's last
commit, minus requests already in the request cache (already paid for: a run reads them back
and sends nothing) and minus repeats of one request (sent once). A later step whose input does
not exist yet (its upstream has not run) cannot build its requests, so it is estimated from a
sample of the nearest existing input, with the columns still to be written filled with text as
long as the upstream step's expected reply, scaled to the upstream row count (every step
assumed to keep its rows); such steps are marked ``exact=False``.

Tokens are expected as ``datamill.pipeline.estimate_tokens`` explains: completions from the
step's own cached replies when there are some, else as long as each request's last user
message (bounded by ``max_tokens``), or the midpoint of a given ``completion_tokens`` range.
The expected cost uses the serving's price (the Batch API price for offline steps); a wide
low–high range comes with it. A model without a price has an unknown cost (``None``), and so
has any total it is part of.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datamill.core.inputs import input_exists
from datamill.core.rowfiles import Row, count_rows, open_reader
from datamill.core.state import StateDB
from datamill.operators.base import LLMOperator, MissingInputError
from datamill.pipeline.estimate_tokens import (
    DEFAULT_COMPLETION_LOW,
    Observed,
    Pending,
    expect,
    filler_text,
)
from datamill.pipeline.plan import StepPlan
from datamill.serving.pricing import HOW_TO_PRICE, sum_costs
from datamill.serving.types import GenericRequest, GenericResponse

#: Committed rows read back per step to find its replies in the cache (observed lengths).
OBSERVE_ROWS = 256
#: Rows of the nearest existing input standing for a step whose own input does not exist yet.
SAMPLE_ROWS = 64


@dataclass
class StepEstimate:
    """What one step still has to send and its expected cost in USD (None: price unknown).

    ``cached_requests`` are already paid for (in the request cache); ``repeated_requests``
    repeat another request of the step and are sent once. ``completion_basis`` says where the
    expected completion tokens come from; ``cost_low_usd``/``cost_high_usd`` bound the cost
    over the completion range.
    """

    index: int
    name: str
    model: str = ""
    rows: int = 0
    requests: int = 0
    cached_requests: int = 0
    repeated_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    completion_tokens_low: int = 0
    completion_tokens_high: int = 0
    cost_usd: float | None = 0.0
    cost_low_usd: float | None = 0.0
    cost_high_usd: float | None = 0.0
    offline: bool = False
    completion_basis: str = ""
    price_source: str = ""
    exact: bool = True
    note: str = ""


@dataclass
class PipelineEstimate:
    """Per-step estimates and their totals; ``format_text()`` renders a table."""

    steps: list[StepEstimate] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(step.requests for step in self.steps)

    @property
    def cached_requests(self) -> int:
        return sum(step.cached_requests for step in self.steps)

    @property
    def prompt_tokens(self) -> int:
        return sum(step.prompt_tokens for step in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(step.completion_tokens for step in self.steps)

    @property
    def cost_usd(self) -> float | None:
        return sum_costs(step.cost_usd for step in self.steps)

    @property
    def cost_low_usd(self) -> float | None:
        return sum_costs(step.cost_low_usd for step in self.steps)

    @property
    def cost_high_usd(self) -> float | None:
        return sum_costs(step.cost_high_usd for step in self.steps)

    @property
    def exact(self) -> bool:
        return all(step.exact for step in self.steps)

    def notes(self) -> list[str]:
        """What a reader of the numbers needs to know, one line each."""
        lines = [f"step {s.index}: {s.note}" for s in self.steps if s.note]
        if self.cached_requests:
            lines.append(
                f"{self.cached_requests} request(s) are already paid for (in the cache): "
                "they are read back, not sent, and cost nothing"
            )
        if not self.exact:
            lines.append("~ estimated from a sample and the upstream row count: its input does not exist yet")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [asdict(step) for step in self.steps],
            "requests": self.requests,
            "cached_requests": self.cached_requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "cost_low_usd": self.cost_low_usd,
            "cost_high_usd": self.cost_high_usd,
            "exact": self.exact,
        }

    def format_text(self) -> str:
        def usd(value: float | None) -> str:
            return "—" if value is None else f"{value:.4f}"

        lines = [
            f"{'step':<28}{'rows':>9}{'requests':>10}{'cached':>8}{'prompt tok':>12}"
            f"{'compl. tok':>12}{'cost (USD)':>12}{'range (USD)':>22}"
        ]
        for s in self.steps:
            mark = "" if s.exact else " ~"
            lines.append(
                f"{f'{s.index} {s.name}':<28}{s.rows:>9}{s.requests:>10}{s.cached_requests:>8}"
                f"{s.prompt_tokens:>12}{s.completion_tokens:>12}{usd(s.cost_usd):>12}"
                f"{usd(s.cost_low_usd) + ' - ' + usd(s.cost_high_usd):>22}{mark}"
            )
        lines.append(
            f"total: {self.requests} requests, {self.prompt_tokens} prompt + {self.completion_tokens} "
            f"completion tokens, {usd(self.cost_usd)} USD expected "
            f"({usd(self.cost_low_usd)} - {usd(self.cost_high_usd)})"
        )
        return "\n".join(lines + self.notes())


def estimate_plan(
    plan: list[StepPlan],
    state_path: Path,
    *,
    completion_tokens: tuple[int, int] | None = None,
) -> PipelineEstimate:
    """Estimate ``plan`` against the cache directory's state (read only; no lock taken)."""
    state = StateDB.open_readonly(state_path) if state_path.exists() else None
    try:
        result = PipelineEstimate()
        expected_rows: int | None = None  # rows the previous step is expected to output in all
        ready = True  # whether this step's input is complete on disk
        reply_tokens: dict[str, float] = {}  # expected tokens per sample of columns still to be written
        for step in plan:
            stored = state.load_step(step.index) if state is not None else None
            done = bool(stored and stored.get("status") == "done")
            position = state.load_position(step.index) if state is not None else None
            estimate = StepEstimate(step.index, step.name)
            per_sample: float | None = None
            if ready and input_exists(step.input_path):
                total_rows = _count(step)
                if isinstance(step.operator, LLMOperator) and not done:
                    per_sample = _estimate_exact(step, estimate, position, state, completion_tokens)
            else:
                total_rows = expected_rows or 0
                if isinstance(step.operator, LLMOperator) and not done:
                    per_sample = _estimate_from_upstream(
                        step, plan, estimate, total_rows, position, completion_tokens, reply_tokens
                    )
            if per_sample is not None:
                for key in step.operator.output_keys(step.call):
                    reply_tokens[key] = per_sample
            result.steps.append(estimate)
            expected_rows = total_rows
            ready = done
        return result
    finally:
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
    cache: StateDB | None,
    completion_tokens: tuple[int, int] | None,
) -> float | None:
    """Count the step's remaining requests; returns the expected completion tokens per sample."""
    op = step.operator
    assert isinstance(op, LLMOperator)
    observed, pending = Observed(), Pending()
    committed = position.in_rows if position is not None else 0
    if cache is not None and committed:
        committed_rows = open_reader(step.input_path, step.input_format).iter_from(0)
        for row, _ in itertools.islice(committed_rows, min(committed, OBSERVE_ROWS)):
            for request in _requests(op, row, step.call):
                response = _cached(cache, request)
                if response is not None:
                    observed.add(request, response)
    seen: set[str] = set()
    start = position.in_position if position is not None else 0
    for row, _ in open_reader(step.input_path, step.input_format).iter_from(start):
        estimate.rows += 1
        for request in _requests(op, row, step.call):
            estimate.model = request.model
            response = _cached(cache, request) if cache is not None else None
            if response is not None:
                estimate.cached_requests += 1
                observed.add(request, response)
            elif request.key in seen:
                estimate.repeated_requests += 1
            else:
                seen.add(request.key)
                pending.add(request)
    return _finish(op, estimate, pending, observed, completion_tokens)


def _estimate_from_upstream(
    step: StepPlan,
    plan: list[StepPlan],
    estimate: StepEstimate,
    total_rows: int,
    position: Any,
    completion_tokens: tuple[int, int] | None,
    reply_tokens: dict[str, float],
) -> float | None:
    op = step.operator
    assert isinstance(op, LLMOperator)
    estimate.exact = False
    estimate.rows = max(0, total_rows - (position.in_rows if position is not None else 0))
    sample = _sample_rows(plan, step, op, reply_tokens)
    pending = Pending()
    for row in sample:
        for request in _requests(op, row, step.call):
            estimate.model = request.model
            pending.add(request)
    scale = estimate.rows / len(sample) if sample else 0.0
    return _finish(op, estimate, pending.scaled(scale), Observed(), completion_tokens)


def _finish(
    op: LLMOperator,
    estimate: StepEstimate,
    pending: Pending,
    observed: Observed,
    completion_tokens: tuple[int, int] | None,
) -> float | None:
    """Fill in the expected tokens and costs; returns the expected completion per sample."""
    expectation = expect(pending, observed, completion_tokens)
    estimate.requests = pending.requests
    estimate.prompt_tokens = expectation.prompt_tokens
    estimate.completion_tokens = expectation.completion_tokens
    estimate.completion_tokens_low = expectation.completion_low
    estimate.completion_tokens_high = expectation.completion_high
    estimate.completion_basis = expectation.basis if pending.requests else ""
    _price(op, estimate)
    if pending.samples:
        return expectation.completion_tokens / pending.samples
    return observed.completion_per_sample


def _price(op: LLMOperator, estimate: StepEstimate) -> None:
    serving = op.llm_serving
    estimate.model = estimate.model or serving.model_name
    estimate.offline = bool(getattr(serving, "use_offline_batch_generation", False))
    if estimate.requests == 0:
        estimate.cost_usd = estimate.cost_low_usd = estimate.cost_high_usd = 0.0
        return
    price = serving.price
    if price is None:
        estimate.cost_usd = estimate.cost_low_usd = estimate.cost_high_usd = None
        estimate.note = f"no price is known for model {estimate.model!r}; {HOW_TO_PRICE}"
        return
    estimate.price_source = price.source
    count = estimate.requests
    prompt = estimate.prompt_tokens / count

    def cost(completion: int) -> float:  # per request, so long-context tiers apply as billed
        return count * price.cost(prompt, completion / count, offline=estimate.offline)

    estimate.cost_usd = cost(estimate.completion_tokens)
    estimate.cost_low_usd = cost(estimate.completion_tokens_low)
    estimate.cost_high_usd = cost(estimate.completion_tokens_high)


def _sample_rows(
    plan: list[StepPlan], step: StepPlan, op: LLMOperator, reply_tokens: dict[str, float]
) -> list[Row]:
    """Rows of the nearest input that has rows, with the columns not written yet filled in."""
    model = op.llm_serving.model_name
    for earlier in reversed(plan[: step.index + 1]):
        if not input_exists(earlier.input_path):
            continue
        reader = open_reader(earlier.input_path, earlier.input_format).iter_from(0)
        rows = [dict(row) for row, _ in itertools.islice(reader, SAMPLE_ROWS)]
        if not rows:  # an upstream step file with nothing committed yet: look further up
            continue
        missing = [
            key
            for later in plan[earlier.index : step.index]
            for key in later.operator.output_keys(later.call)
        ]
        missing += op.input_keys(step.call)
        fillers = {key: filler_text(reply_tokens.get(key, DEFAULT_COMPLETION_LOW), model) for key in missing}
        for row in rows:
            for key, text in fillers.items():
                row.setdefault(key, text)
        return rows
    return []


def _requests(op: LLMOperator, row: Row, call: dict[str, Any]) -> list[GenericRequest]:
    try:
        return op.build_requests(row, call)
    except MissingInputError:
        return []


def _cached(cache: StateDB, request: GenericRequest) -> GenericResponse | None:
    data = cache.cached_response(request.key)
    return None if data is None else GenericResponse.from_cache(data)
