"""``max_cost_usd``: a cap on what the cache has spent, across every run.

The budget caps the cache's cumulative spend (``datamill.core.spend``): everything recorded by
earlier runs plus this run's paid responses as they arrive. It is asked before every send
(``gate``): when the spend so far, plus what the requests already on the wire will probably
cost, plus the next request would pass the cap, nothing more is sent, the batches already
answered are committed, and the run raises ``BudgetExceededError`` (exit code 76 from the
CLI). Rerunning with the same cap stops at once; with a higher one, the run continues where it
stopped, paying nothing twice (every response is in the request cache).

A request's probable cost is the average cost of the cache's paid requests so far; until one
is known, requests are sent while the spend is under the cap, so the cap can be passed by at
most the requests on the wire, which no client can call back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from datamill.core.ledger import Ledger
from datamill.core.spend import Spend
from datamill.errors import BudgetExceededError, ConfigError, advice
from datamill.serving.base import LLMServingABC

log = logging.getLogger(__name__)

COST_EPSILON_USD = 1e-9  # sums of float costs differ in the last bits; a nano-dollar is "equal"


@dataclass
class Budget:
    """``max_cost_usd`` and the spend recorded before this run started."""

    max_cost_usd: float
    spent_before: Spend
    reached: bool = False

    def spent(self, ledger: Ledger) -> Spend:
        """Everything recorded: earlier runs and this run's paid responses so far."""
        total = self.spent_before
        for spend in ledger.run_spend.values():
            total = total.merge(spend)
        return total

    def gate_for(
        self, ledger: Ledger, in_flight: Callable[[], int] = lambda: 0
    ) -> Callable[[], BaseException | None]:
        """The check the send lanes make before each send: None to send, else the error."""

        def gate() -> BaseException | None:
            if self.reached:
                return self.error(ledger)
            spent = self.spent(ledger)
            cost = spent.priced_cost_usd
            average = cost / spent.requests if spent.requests else 0.0
            if cost + average * (in_flight() + 1) + COST_EPSILON_USD >= self.max_cost_usd and (
                average > 0 or cost + COST_EPSILON_USD >= self.max_cost_usd
            ):
                self.reached = True
                log.warning(
                    "budget of $%.4f reached ($%.4f recorded): sending nothing more, committing what is answered",
                    self.max_cost_usd,
                    cost,
                )
                return self.error(ledger)
            return None

        return gate

    def error(self, ledger: Ledger) -> BudgetExceededError:
        spent = self.spent(ledger)
        return BudgetExceededError(
            f"the budget of ${self.max_cost_usd:.4f} (cumulative over every run of this cache) is reached: "
            f"${spent.priced_cost_usd:.4f} spent on {spent.requests} paid requests. Batches already answered "
            f"are committed. Rerun with {advice('raise_budget')} to continue: nothing already paid is paid "
            "again."
        )


def check_budget_config(max_cost_usd: float | None, servings: list[LLMServingABC]) -> None:
    """Reject a negative budget, and a budget over a serving whose price is unknown."""
    if max_cost_usd is None:
        return
    if max_cost_usd < 0:
        raise ConfigError(f"max_cost_usd must be >= 0, got {max_cost_usd!r}")
    for serving in servings:
        serving.require_price()
