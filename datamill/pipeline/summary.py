"""What a run reports: per-step counts, requests, spend and time.

Spend comes in two figures everywhere it is shown: this run's (``cost_usd``,
``prompt_tokens``, ``completion_tokens``, ``requests_paid``) and the total across every run of
the cache (``total_*``), both from the ledger's spend records (``datamill.core.spend``), so the
live display, the summary and ``datamill status`` agree mid-step and at the end. A cost is None
when some paid response has no known price.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from datamill.core.spend import Spend
from datamill.serving.pricing import sum_costs


@dataclass
class StepSummary:
    index: int
    name: str
    model: str = ""
    status: str = "pending"
    rows_in: int = 0
    rows_out: int = 0
    rows_failed: int = 0
    rows_dropped: int = 0
    rows_this_run: int = 0
    requests_sent: int = 0
    cache_hits: int = 0
    retries: int = 0
    requests_paid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    total_requests_paid: int = 0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    total_cost_usd: float | None = 0.0
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)
    drop_reasons: dict[str, int] = field(default_factory=dict)
    failure_samples: list[tuple[int, str]] = field(default_factory=list)
    spend_before_run: Spend = field(default_factory=Spend, repr=False)

    def take_run_spend(self, run: Spend | None) -> None:
        """This run's spend so far (the ledger's tally), and the total with earlier runs'."""
        run = run or Spend()
        self.requests_paid = run.requests
        self.prompt_tokens = run.prompt_tokens
        self.completion_tokens = run.completion_tokens
        self.cost_usd = run.cost_usd
        self._take_total(self.spend_before_run.merge(run))

    def load_totals(self, totals: dict[str, Any], failure_samples: list[tuple[int, str]]) -> None:
        """Take the step's committed totals (``StateDB.step_totals``): the database is the truth."""
        self.rows_in = totals["rows_in"]
        self.rows_out = totals["rows_out"]
        self.rows_failed = totals["rows_failed"]
        self.rows_dropped = totals["rows_dropped"]
        self._take_total(totals["spend"])
        self.failure_samples = failure_samples

    def _take_total(self, spend: Spend) -> None:
        self.total_requests_paid = spend.requests
        self.total_prompt_tokens = spend.prompt_tokens
        self.total_completion_tokens = spend.completion_tokens
        self.total_cost_usd = spend.cost_usd

    @property
    def rows_per_second(self) -> float:
        return self.rows_this_run / self.seconds if self.seconds > 0 else 0.0


#: What a run's or step's stored status means, in words for people.
STATUS_WORDS = {
    "pending": "not started",
    "running": "running",
    "done": "complete",
    "complete": "complete",
    "failed_rows": "finished with failed rows",
    "budget_exceeded": "stopped at the budget",
    "offline_pending": "waiting for batch jobs",
    "interrupted": "interrupted",
    "error": "stopped by an error",
}


def describe_status(status: str) -> str:
    """``status`` in words (``failed_rows`` -> ``finished with failed rows``)."""
    return STATUS_WORDS.get(status, status.replace("_", " "))


@dataclass
class RunSummary:
    """Returned by ``forward()``; also stored in the state database's ``runs`` table."""

    steps: list[StepSummary] = field(default_factory=list)
    status: str = "running"
    already_complete: bool = False
    seconds: float = 0.0
    output_path: str = ""

    @property
    def rows_failed(self) -> int:
        return sum(step.rows_failed for step in self.steps)

    @property
    def requests_sent(self) -> int:
        return sum(step.requests_sent for step in self.steps)

    @property
    def prompt_tokens(self) -> int:
        return sum(step.prompt_tokens for step in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(step.completion_tokens for step in self.steps)

    @property
    def cost_usd(self) -> float | None:
        """This run's cost (None when a paid response has no known price)."""
        return sum_costs([step.cost_usd for step in self.steps])

    @property
    def total_cost_usd(self) -> float | None:
        """The cost of every run of the cache so far."""
        return sum_costs([step.total_cost_usd for step in self.steps])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for step in data["steps"]:
            step.pop("spend_before_run", None)
        data["rows_failed"] = self.rows_failed
        data["requests_sent"] = self.requests_sent
        data["spend"] = {
            "this_run": {
                "requests": sum(step.requests_paid for step in self.steps),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": self.cost_usd,
            },
            "total": {
                "requests": sum(step.total_requests_paid for step in self.steps),
                "prompt_tokens": sum(step.total_prompt_tokens for step in self.steps),
                "completion_tokens": sum(step.total_completion_tokens for step in self.steps),
                "cost_usd": self.total_cost_usd,
            },
        }
        return data

    def format_text(self) -> str:
        """A plain-text table for logs and non-TTY output, with a total row."""
        lines = [
            f"run {describe_status(self.status)} in {self.seconds:.1f}s"
            + (" (already complete)" if self.already_complete else "")
        ]
        lines.append(
            f"{'step':<24}{'in':>8}{'out':>8}{'failed':>7}{'sent':>7}{'cached':>7}"
            f"{'cost (run)':>12}{'cost (total)':>13}"
        )
        for step in self.steps:
            lines.append(
                f"{f'{step.index} {step.name}'[:23]:<24}{step.rows_in:>8}{step.rows_out:>8}{step.rows_failed:>7}"
                f"{step.requests_sent:>7}{step.cache_hits:>7}{_cost(step.cost_usd):>12}{_cost(step.total_cost_usd):>13}"
            )
        lines.append(
            f"{'total':<24}{'':>8}{'':>8}{self.rows_failed:>7}{self.requests_sent:>7}"
            f"{sum(s.cache_hits for s in self.steps):>7}{_cost(self.cost_usd):>12}{_cost(self.total_cost_usd):>13}"
        )
        return "\n".join(lines)


def _cost(cost: float | None) -> str:
    if cost is None:
        return "—"
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"
