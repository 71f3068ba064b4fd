"""What a run reports: per-step counts, requests, tokens, cost and time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)
    failure_samples: list[tuple[int, str]] = field(default_factory=list)
    drop_reasons: dict[str, int] = field(default_factory=dict)

    def load_totals(self, totals: dict[str, Any], failure_samples: list[tuple[int, str]]) -> None:
        """Take the step's committed totals (``StateDB.step_totals``): the database is the truth."""
        self.rows_in = totals["rows_in"]
        self.rows_out = totals["rows_out"]
        self.rows_failed = totals["rows_failed"]
        self.rows_dropped = totals["rows_dropped"]
        self.prompt_tokens = totals["prompt_tokens"]
        self.completion_tokens = totals["completion_tokens"]
        self.cost_usd = totals["cost_usd"]
        self.failure_samples = failure_samples

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
    def cost_usd(self) -> float:
        return sum(step.cost_usd for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_failed"] = self.rows_failed
        data["requests_sent"] = self.requests_sent
        return data

    def format_text(self) -> str:
        """A plain-text table for logs and non-TTY output."""
        lines = [
            f"run {describe_status(self.status)} in {self.seconds:.1f}s"
            + (" (already complete)" if self.already_complete else "")
        ]
        lines.append(
            f"{'step':<28}{'in':>9}{'out':>9}{'failed':>8}{'dropped':>8}{'sent':>8}{'cached':>8}{'rows/s':>9}"
        )
        for step in self.steps:
            lines.append(
                f"{f'{step.index} {step.name}':<28}{step.rows_in:>9}{step.rows_out:>9}{step.rows_failed:>8}"
                f"{step.rows_dropped:>8}{step.requests_sent:>8}{step.cache_hits:>8}{step.rows_per_second:>9.1f}"
            )
        return "\n".join(lines)
