"""Spend: what the provider billed, counted once per paid response, kept across every run.

A paid response (an online reply, or a Batch API line that succeeded) is recorded in the
``spend`` table by the ledger in the same transaction that stores it in the request cache, so
a response is durable and counted, or neither. Cache hits and requests joined to one in flight
add nothing. Nothing ever deletes from the table: recomputing a step, resuming after a kill or
retrying failed rows adds to what was spent before, which is what the budget
(``max_cost_usd``) caps.

Each row aggregates the responses of one ledger write for one (run, step, Batch API or not,
model): a few rows a second, enough to plot spend over time. ``cost_usd`` sums the responses
whose price is known; ``unpriced`` counts those whose price is not (their cost is unknown,
never taken as zero).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

SPEND_TABLE = """
CREATE TABLE IF NOT EXISTS spend (
    run INTEGER,
    step INTEGER,
    batch_api INTEGER NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_step ON spend(step, run)"""


@dataclass(slots=True)
class PaidResponse:
    """One paid response's share of the spend: who asked for it and what it cost (or the sum
    of ``requests`` responses of one Batch API job).

    ``cost_usd`` is None when the serving knows no price for the model.
    """

    step: int | None
    batch_api: bool
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    requests: int = 1

    def to_json(self) -> list:
        return [
            self.step,
            self.batch_api,
            self.model,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_usd,
        ]

    @classmethod
    def from_json(cls, data: list) -> PaidResponse:
        step, batch_api, model, prompt, completion, cost = data
        return cls(step, bool(batch_api), str(model), int(prompt), int(completion), cost)


@dataclass
class Spend:
    """Calls paid, tokens and cost: for a step or a cache, for one run or all of them."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    priced_cost_usd: float = 0.0
    unpriced_requests: int = 0
    batch_api_requests: int = 0

    @property
    def cost_usd(self) -> float | None:
        """The cost, or None when some paid response has no known price."""
        return None if self.unpriced_requests else self.priced_cost_usd

    def add(self, paid: PaidResponse) -> None:
        self.requests += paid.requests
        self.prompt_tokens += paid.prompt_tokens
        self.completion_tokens += paid.completion_tokens
        if paid.cost_usd is None:
            self.unpriced_requests += paid.requests
        else:
            self.priced_cost_usd += paid.cost_usd
        self.batch_api_requests += paid.requests * paid.batch_api

    def merge(self, other: Spend) -> Spend:
        return Spend(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.priced_cost_usd + other.priced_cost_usd,
            self.unpriced_requests + other.unpriced_requests,
            self.batch_api_requests + other.batch_api_requests,
        )

    def to_dict(self) -> dict[str, object]:
        """The four figures ``datamill status --json`` shows, plus how many are unpriced."""
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "unpriced_requests": self.unpriced_requests,
            "batch_api_requests": self.batch_api_requests,
        }


def insert_spend(conn: sqlite3.Connection, run: int | None, paid: list[PaidResponse]) -> None:
    """Add ``paid`` to the table, one row per (step, Batch API, model); inside the caller's
    transaction, beside the responses it counts."""
    groups: dict[tuple[int | None, bool, str], Spend] = {}
    for response in paid:
        groups.setdefault((response.step, response.batch_api, response.model), Spend()).add(response)
    now = time.time()
    conn.executemany(
        "INSERT INTO spend(run, step, batch_api, model, requests, prompt_tokens, completion_tokens, "
        "cost_usd, unpriced, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run,
                step,
                int(batch_api),
                model,
                spend.requests,
                spend.prompt_tokens,
                spend.completion_tokens,
                spend.priced_cost_usd,
                spend.unpriced_requests,
                now,
            )
            for (step, batch_api, model), spend in groups.items()
        ],
    )


def read_spend(conn: sqlite3.Connection, *, step: int | None = None, run: int | None = None) -> Spend:
    """The spend recorded for ``step`` (None: every step) in ``run`` (None: every run)."""
    where, params = [], []
    if step is not None:
        where.append("step=?")
        params.append(step)
    if run is not None:
        where.append("run=?")
        params.append(run)
    sql = (
        "SELECT COALESCE(SUM(requests),0), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), "
        "COALESCE(SUM(cost_usd),0), COALESCE(SUM(unpriced),0), COALESCE(SUM(requests*batch_api),0) FROM spend"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    try:
        row = conn.execute(sql, params).fetchone()
    except sqlite3.OperationalError:  # a database written before spend was recorded
        return Spend()
    return Spend(int(row[0]), int(row[1]), int(row[2]), float(row[3]), int(row[4]), int(row[5]))
