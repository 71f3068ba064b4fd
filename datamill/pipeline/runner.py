"""Running a compiled pipeline: each step over the whole dataset, one committed batch at a time.

Steps run in order. Within an LLM step, batches are computed concurrently (requests flow
across batch boundaries, up to the serving's ``max_workers`` in flight) and committed strictly
in input order through the ledger (``datamill.core.ledger``), which alone writes; the number of
uncommitted input rows is bounded, so memory stays flat however large the dataset.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass

from datamill.core.inputs import input_exists
from datamill.core.ledger import Ledger, PendingBatch, StepLog
from datamill.core.rowfiles import Row, count_rows, open_reader
from datamill.errors import ConfigError
from datamill.operators.base import Dropped, Failed, LLMOperator, Outcome
from datamill.pipeline.budget import Budget
from datamill.pipeline.executors import BatchInput, Executor, InProcessExecutor
from datamill.pipeline.llm_batch import compute_llm_batch
from datamill.pipeline.offline_requests import offline_step_requests
from datamill.pipeline.plan import StepPlan
from datamill.pipeline.progress import ProgressSink
from datamill.pipeline.summary import RunSummary, StepSummary
from datamill.serving.base import LLMServingABC
from datamill.serving.dispatch import RequestDispatcher
from datamill.serving.offline.engine import prepare_offline_step

log = logging.getLogger(__name__)

FAILURE_SAMPLES = 5
#: Rows read ahead between two turns given to the event loop: often enough that responses are
#: handled promptly, rarely enough that small batches don't pay a loop turn each.
YIELD_EVERY_ROWS = 64


@dataclass
class _InFlight:
    rows: list[Row]
    first_row: int
    end_position: int
    task: asyncio.Task[list[Outcome]]


def read_batches(rows: Iterator[tuple[Row, int]], batch_size: int) -> Iterator[tuple[list[Row], int]]:
    """Group ``(row, position)`` pairs into batches with the position after each batch."""
    batch: list[Row] = []
    position = 0
    for row, position in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            yield batch, position
            batch = []
    if batch:
        yield batch, position


def number_batches(batches: Iterator[tuple[list[Row], int]], first_row: int) -> Iterator[BatchInput]:
    """``read_batches``' batches with the index of each one's first row in the step input."""
    for rows, end_position in batches:
        yield BatchInput(rows, first_row, end_position)
        first_row += len(rows)


def split_outcomes(
    outcomes: list[Outcome], first_row: int, label: str
) -> tuple[list[Row], list[tuple[int, str]], dict[str, int]]:
    """Output rows, failures (absolute input row, error) and drop counts of one batch."""
    rows: list[Row] = []
    failures: list[tuple[int, str]] = []
    drops: dict[str, int] = {}
    for offset, outcome in enumerate(outcomes):
        if isinstance(outcome, dict):
            rows.append(outcome)
        elif isinstance(outcome, list):
            rows.extend(outcome)
        elif isinstance(outcome, Dropped):
            drops[outcome.reason] = drops.get(outcome.reason, 0) + 1
        elif isinstance(outcome, Failed):
            failures.append((first_row + offset, outcome.error))
        else:
            raise ConfigError(
                f"{label} returned {type(outcome).__name__}; expected a row, a list, Dropped or Failed"
            )
    return rows, failures, drops


class PipelineRunner:
    """Executes the steps that are not done yet, and fills the run summary.

    Every durable write goes through ``ledger``: responses (from the dispatcher), batch
    commits (``StepLog``) and offline records. The budget, if any, is asked before each send.
    """

    def __init__(
        self,
        plan: list[StepPlan],
        ledger: Ledger,
        summary: RunSummary,
        *,
        batch_size: int,
        progress: ProgressSink | None,
        budget: Budget | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.plan = plan
        self.ledger = ledger
        self.state = ledger.db
        self.summary = summary
        self.batch_size = batch_size
        self.progress = progress
        self.budget = budget
        gate = (
            budget.gate_for(ledger, lambda: self.dispatcher.stats.in_flight) if budget is not None else None
        )
        self.dispatcher = RequestDispatcher(ledger, send_gate=gate)
        # Computes local steps' batches (and may host local models); only this process commits.
        self.executor = executor if executor is not None else InProcessExecutor()

    async def run(self) -> None:
        servings = self._servings()
        self.ledger.start()
        try:
            await self.executor.start(servings)
            for serving in servings:
                await serving.start()
            for step in self.plan:
                stored = self.ledger.reader.load_step(step.index)
                if stored is not None and stored["status"] == "done":
                    continue
                await self._run_step(step)
        finally:
            try:
                await self.dispatcher.close()
            finally:
                try:
                    await self.ledger.stop()
                finally:
                    try:
                        for serving in servings:
                            await serving.close()
                    finally:
                        await self.executor.close()

    def _servings(self) -> list[LLMServingABC]:
        found: dict[int, LLMServingABC] = {}
        for step in self.plan:
            serving = getattr(step.operator, "llm_serving", None)
            if isinstance(serving, LLMServingABC):
                found[id(serving)] = serving
        return list(found.values())

    async def _run_step(self, step: StepPlan) -> None:
        summary = self.summary.steps[step.index]
        summary.status = "running"
        position = self.ledger.reader.load_position(step.index)
        reader = open_reader(step.input_path, step.input_format)
        step_log = self.ledger.open_step(step.index, step.output_path, step.output_format)
        started = time.monotonic()
        stats = self.dispatcher.stats
        sent_before, hits_before, retries_before = stats.sent, stats.cache_hits, stats.retries

        def on_commit(group: list[PendingBatch]) -> None:
            summary.rows_this_run = step_log.committed_rows_in - position.in_rows
            summary.rows_failed += sum(len(batch.failures) for batch in group)
            summary.seconds = time.monotonic() - started
            summary.requests_sent = stats.sent - sent_before
            summary.cache_hits = stats.cache_hits - hits_before
            summary.retries = stats.retries - retries_before
            summary.take_run_spend(self.ledger.run_spend.get(step.index))
            if self.progress is not None:
                self.progress.rows_committed(summary, step_log.committed_rows_in, stats)

        step_log.on_commit.append(on_commit)
        summary.rows_failed = self.ledger.reader.failure_count(step.index)
        if self.progress is not None:
            self.progress.step_started(summary, _safe_count(step), position.in_rows)
        try:
            op = step.operator
            if not op.row_local:
                op.prepare((row for row, _ in reader.iter_from(0)), step.call)
            rows = reader.iter_from(position.in_position)
            offline = None
            if isinstance(op, LLMOperator) and op.llm_serving.use_offline_batch_generation:
                offline = await prepare_offline_step(
                    op.llm_serving,
                    step=step.index,
                    requests=lambda: offline_step_requests(
                        op, step.call, reader.iter_from(position.in_position), self.ledger
                    ),
                    ledger=self.ledger,
                    label=step.label,
                    recheck_answers=op.validates_replies,
                )
                self.dispatcher.offline_failures.update(offline.failures)
            if isinstance(op, LLMOperator):
                await self._run_llm_step(step, op, rows, position.seq, position.in_rows, step_log)
            else:
                await self._run_local_step(step, rows, position.seq, position.in_rows, step_log)
            await step_log.drain()
            if offline is not None:
                await offline.finish()
        finally:
            try:
                await _settle(self.ledger)
            finally:
                step_log.close()
        await self.ledger.write(lambda conn: _mark_done(conn, step.index))
        self._finish_step_summary(step, summary, started)
        if self.progress is not None:
            self.progress.step_finished(summary)

    async def _run_local_step(
        self,
        step: StepPlan,
        rows: Iterator[tuple[Row, int]],
        seq: int,
        row_index: int,
        step_log: StepLog,
    ) -> None:
        batches = number_batches(read_batches(rows, self.batch_size), row_index)
        computed = self.executor.map_batches(step.operator, step.call, batches, label=step.label)
        async with aclosing(computed):
            async for batch, outcomes in computed:
                seq += 1
                pending = self._pending(step, seq, batch.rows, batch.first_row, batch.end_position, outcomes)
                step_log.submit(pending, len(batch.rows))
                await step_log.wait_backlog(self.batch_size * 4)

    async def _run_llm_step(
        self,
        step: StepPlan,
        op: LLMOperator,
        rows: Iterator[tuple[Row, int]],
        seq: int,
        row_index: int,
        step_log: StepLog,
    ) -> None:
        window = max(2 * self.batch_size, 8 * op.llm_serving.max_workers)
        in_flight: deque[_InFlight] = deque()
        rows_in_flight = 0
        read_since_yield = 0

        async def commit_head() -> None:
            nonlocal seq, rows_in_flight
            head = in_flight.popleft()
            outcomes = await head.task
            rows_in_flight -= len(head.rows)
            seq += 1
            step_log.submit(
                self._pending(step, seq, head.rows, head.first_row, head.end_position, outcomes),
                len(head.rows),
            )

        try:
            for batch, end_position in read_batches(rows, self.batch_size):
                task = asyncio.ensure_future(
                    compute_llm_batch(op, step.call, batch, self.dispatcher, step=step.index)
                )
                in_flight.append(_InFlight(batch, row_index, end_position, task))
                row_index += len(batch)
                rows_in_flight += len(batch)
                while in_flight and (rows_in_flight >= window or in_flight[0].task.done()):
                    await commit_head()
                    await step_log.wait_backlog(window)
                read_since_yield += len(batch)
                if read_since_yield >= YIELD_EVERY_ROWS:
                    read_since_yield = 0
                    await asyncio.sleep(0)  # let responses in while reading ahead
            while in_flight:
                await commit_head()
        finally:
            for item in in_flight:
                item.task.cancel()

    def _pending(
        self,
        step: StepPlan,
        seq: int,
        batch: list[Row],
        first_row: int,
        end_position: int,
        outcomes: list[Outcome],
    ) -> PendingBatch:
        if len(outcomes) != len(batch):
            raise ConfigError(
                f"{step.label} returned {len(outcomes)} outcomes for {len(batch)} rows; return one per input row"
            )
        rows, failures, drops = split_outcomes(outcomes, first_row, step.label)
        return PendingBatch(
            seq=seq,
            rows=rows,
            in_row_end=first_row + len(batch),
            in_position=end_position,
            failures=failures,
            drops=drops,
        )

    def _finish_step_summary(self, step: StepPlan, summary: StepSummary, started: float) -> None:
        summary.status = "done"
        summary.seconds = time.monotonic() - started
        summary.take_run_spend(self.ledger.run_spend.get(step.index))
        summary.load_totals(
            self.ledger.reader.step_totals(step.index),
            self.ledger.reader.failures(step.index, limit=FAILURE_SAMPLES),
        )


async def _settle(ledger: Ledger) -> None:
    """Let the batches already submitted commit, raising nothing: a step that stops early (an
    error, Ctrl-C) keeps every batch it finished before the stop, and its file is closed only
    once no commit is running on it (a failed ledger reports its own error)."""
    try:
        await ledger.flush()
    except Exception:  # noqa: BLE001 — the ledger's error is raised where the run stops
        pass


def _mark_done(conn: sqlite3.Connection, step: int) -> None:
    conn.execute("UPDATE steps SET status='done', updated_at=? WHERE step=?", (time.time(), step))


def _safe_count(step: StepPlan) -> int | None:
    """Rows in the step's input, for progress totals; None if counting fails."""
    try:
        if not input_exists(step.input_path):
            return None
        return count_rows(step.input_path, step.input_format)
    except Exception:  # a total is a nicety; a bad file is reported by the reader itself
        return None
