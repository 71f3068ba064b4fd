"""``max_cost_usd``: stop a run once the pipeline's recorded spend reaches its budget.

The budget caps the total cost recorded in the cache directory — every committed batch of
every run so far, plus the fresh responses of this run as they arrive — so rerunning with the
same budget stops at once and rerunning with a higher one continues where the run stopped.
When it is reached the runner launches no new batch, commits the batches in flight (their
requests are already paid or on the wire), and raises ``BudgetExceededError``; nothing is
lost or paid twice, because every response is in the request cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from datamill.errors import BudgetExceededError, ConfigError, advice
from datamill.serving.base import LLMServingABC
from datamill.serving.dispatch import DispatchStats

log = logging.getLogger(__name__)

COST_EPSILON_USD = 1e-9  # sums of float costs differ in the last bits; a nano-dollar is "equal"


@dataclass
class Budget:
    """``max_cost_usd`` and what was spent before this run started (from the state database)."""

    max_cost_usd: float
    spent_before: float = 0.0
    reached: bool = False

    def spent(self, stats: DispatchStats) -> float:
        return self.spent_before + stats.cost_usd

    def check(self, stats: DispatchStats) -> bool:
        """Whether the budget is reached now (remembered, so the run can say so at the end)."""
        if not self.reached and self.spent(stats) + COST_EPSILON_USD >= self.max_cost_usd:
            self.reached = True
            log.warning(
                "budget of $%.4f reached ($%.4f recorded): committing the batches in flight, then stopping",
                self.max_cost_usd,
                self.spent(stats),
            )
        return self.reached

    def error(self, stats: DispatchStats) -> BudgetExceededError:
        return BudgetExceededError(
            f"the budget of ${self.max_cost_usd:.4f} is reached (${self.spent(stats):.4f} recorded); the run "
            f"stopped after committing the batches in flight. Rerun with {advice('raise_budget')} to "
            "continue: committed rows and cached responses are kept."
        )


def check_budget_config(max_cost_usd: float | None, servings: list[LLMServingABC]) -> None:
    """Reject a negative budget, and a budget over a serving whose price is unknown."""
    if max_cost_usd is None:
        return
    if max_cost_usd < 0:
        raise ConfigError(f"max_cost_usd must be >= 0, got {max_cost_usd!r}")
    for serving in servings:
        serving.require_price()
