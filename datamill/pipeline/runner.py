"""Running a compiled pipeline: each step over the whole dataset, one committed batch at a time.

Steps run in order. Within an LLM step, batches are computed concurrently (requests flow
across batch boundaries, up to the serving's ``max_workers`` in flight) and committed strictly
in input order by the group committer; the number of uncommitted input rows is bounded, so
memory stays flat however large the dataset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from datamill.core.inputs import input_exists
from datamill.core.request_cache import RequestCache
from datamill.core.rowfiles import Row, count_rows, open_reader, open_writer
from datamill.core.state import StateDB
from datamill.errors import ConfigError
from datamill.operators.base import Dropped, Failed, LLMOperator, MissingInputError, Outcome
from datamill.pipeline.budget import Budget
from datamill.pipeline.committer import GroupCommitter, PendingBatch
from datamill.pipeline.llm_batch import LLMBatchResult, compute_llm_batch
from datamill.pipeline.plan import StepPlan
from datamill.pipeline.progress import ProgressSink
from datamill.pipeline.summary import RunSummary, StepSummary
from datamill.serving.base import LLMServingABC
from datamill.serving.dispatch import RequestDispatcher
from datamill.serving.offline.engine import prepare_offline_step
from datamill.serving.types import GenericRequest

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
    task: asyncio.Task[LLMBatchResult]


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
    """Executes the steps that are not done yet, and fills the run summary."""

    def __init__(
        self,
        plan: list[StepPlan],
        state: StateDB,
        cache: RequestCache,
        summary: RunSummary,
        *,
        batch_size: int,
        progress: ProgressSink | None,
        budget: Budget | None = None,
    ) -> None:
        self.plan = plan
        self.state = state
        self.cache = cache
        self.summary = summary
        self.batch_size = batch_size
        self.progress = progress
        self.budget = budget
        # Responses go to the request cache through the dispatcher's cache writer (grouped, on
        # a thread of its own); the cache's key filter keeps reads off SQLite. Batches are
        # appended and committed on their own thread, so the loop never waits on a step
        # file's fsync. The two writers share one lock (``StateDB.write_lock``).
        self.commit_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datamill-commit")
        self.dispatcher = RequestDispatcher(cache)

    async def run(self) -> None:
        servings = self._servings()
        self.cache.load_key_filter()
        try:
            for serving in servings:
                await serving.start()
            for step in self.plan:
                stored = self.state.load_step(step.index)
                if stored is not None and stored["status"] == "done":
                    continue
                await self._run_step(step)
        finally:
            try:
                await self.dispatcher.close()
            finally:
                self.commit_writer.shutdown(wait=True)
                for serving in servings:
                    await serving.close()

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
        position = self.state.load_position(step.index)
        reader = open_reader(step.input_path, step.input_format)
        writer = open_writer(step.output_path, step.output_format, position.out_position)
        committer = GroupCommitter(step.index, writer, self.state, self.commit_writer)
        committer.committed_rows_in = position.in_rows
        started = time.monotonic()
        sent_before, hits_before, retries_before = (
            self.dispatcher.stats.sent,
            self.dispatcher.stats.cache_hits,
            self.dispatcher.stats.retries,
        )

        def on_commit(group: list[PendingBatch]) -> None:
            summary.rows_this_run = committer.committed_rows_in - position.in_rows
            summary.rows_failed += sum(len(batch.failures) for batch in group)
            summary.prompt_tokens += sum(batch.prompt_tokens for batch in group)
            summary.completion_tokens += sum(batch.completion_tokens for batch in group)
            summary.cost_usd += sum(batch.cost_usd for batch in group)
            summary.seconds = time.monotonic() - started
            summary.requests_sent = self.dispatcher.stats.sent - sent_before
            summary.cache_hits = self.dispatcher.stats.cache_hits - hits_before
            summary.retries = self.dispatcher.stats.retries - retries_before
            if self.progress is not None:
                self.progress.rows_committed(summary, committer.committed_rows_in, self.dispatcher.stats)

        committer.on_commit.append(on_commit)
        summary.rows_failed = self.state.failure_count(step.index)
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
                    requests=lambda: _step_requests(op, step.call, reader.iter_from(position.in_position)),
                    cache=self.cache,
                    state_path=self.state.path,
                    label=step.label,
                )
                self.dispatcher.add_offline(offline)
                # Batch answers went into the cache by the offline store's own connection:
                # rebuild the key filter (a build still running from the start is superseded).
                self.cache.load_key_filter()
            if isinstance(op, LLMOperator):
                await self._run_llm_step(step, op, rows, position.seq, position.in_rows, committer)
            else:
                await self._run_local_step(step, rows, position.seq, position.in_rows, committer)
            await committer.drain()
            if self.budget is not None and self.budget.reached:
                raise self.budget.error(self.dispatcher.stats)
            if offline is not None:
                offline.finish()
        finally:
            try:
                await committer.settle()
            finally:
                writer.close()
        self.state.set_step_status(step.index, "done")
        self._finish_step_summary(step, summary, started)
        if self.progress is not None:
            self.progress.step_finished(summary)

    async def _run_local_step(
        self,
        step: StepPlan,
        rows: Iterator[tuple[Row, int]],
        seq: int,
        row_index: int,
        committer: GroupCommitter,
    ) -> None:
        op = step.operator
        for batch, end_position in read_batches(rows, self.batch_size):
            outcomes = op.process_rows(batch, row_index, step.call)
            seq += 1
            committer.submit(
                self._pending(step, seq, batch, row_index, end_position, outcomes, None), len(batch)
            )
            row_index += len(batch)
            await committer.wait_backlog(self.batch_size * 4)

    async def _run_llm_step(
        self,
        step: StepPlan,
        op: LLMOperator,
        rows: Iterator[tuple[Row, int]],
        seq: int,
        row_index: int,
        committer: GroupCommitter,
    ) -> None:
        window = max(2 * self.batch_size, 8 * op.llm_serving.max_workers)
        in_flight: deque[_InFlight] = deque()
        rows_in_flight = 0
        read_since_yield = 0

        async def commit_head() -> None:
            nonlocal seq, rows_in_flight
            head = in_flight.popleft()
            result = await head.task
            rows_in_flight -= len(head.rows)
            seq += 1
            pending = self._pending(
                step, seq, head.rows, head.first_row, head.end_position, result.outcomes, result
            )
            committer.submit(pending, len(head.rows))

        try:
            for batch, end_position in read_batches(rows, self.batch_size):
                if self.budget is not None and self.budget.check(self.dispatcher.stats):
                    break
                task = asyncio.ensure_future(compute_llm_batch(op, step.call, batch, self.dispatcher))
                in_flight.append(_InFlight(batch, row_index, end_position, task))
                row_index += len(batch)
                rows_in_flight += len(batch)
                while in_flight and (rows_in_flight >= window or in_flight[0].task.done()):
                    await commit_head()
                    await committer.wait_backlog(window)
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
        llm: LLMBatchResult | None,
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
            prompt_tokens=llm.prompt_tokens if llm else 0,
            completion_tokens=llm.completion_tokens if llm else 0,
            cost_usd=llm.cost_usd if llm else 0.0,
        )

    def _finish_step_summary(self, step: StepPlan, summary: StepSummary, started: float) -> None:
        summary.status = "done"
        summary.seconds = time.monotonic() - started
        summary.load_totals(
            self.state.step_totals(step.index), self.state.failures(step.index, limit=FAILURE_SAMPLES)
        )


def _step_requests(op: LLMOperator, call: dict, rows: Iterator[tuple[Row, int]]) -> Iterator[GenericRequest]:
    """Every request of ``rows``, for the offline path; rows missing their input are skipped."""
    for row, _ in rows:
        try:
            yield from op.build_requests(row, call)
        except MissingInputError:
            continue


def _safe_count(step: StepPlan) -> int | None:
    """Rows in the step's input, for progress totals; None if counting fails."""
    try:
        if not input_exists(step.input_path):
            return None
        return count_rows(step.input_path, step.input_format)
    except Exception:  # a total is a nicety; a bad file is reported by the reader itself
        return None
