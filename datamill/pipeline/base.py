"""``BatchedPipelineABC``: what users subclass.

Create the storage, servings and operators in ``__init__`` and wire them in ``forward()``.
``compile()`` traces ``forward()`` — the operators' ``run`` calls only record the steps — and
validates the keys against the input's first rows. ``forward(batch_size=..., ...)`` then runs
the engine; a subclass's own ``forward`` is kept as the trace source, so
``p.compile(); p.forward(batch_size=2, resume_from_last=True)`` reads as in the examples.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from datamill.core.ledger import Ledger
from datamill.core.lock import CacheLock
from datamill.core.rowfiles import Row
from datamill.core.step_tables import to_dataset
from datamill.errors import (
    BudgetExceededError,
    ConfigError,
    DatamillError,
    OfflineBatchGenerationNotFinished,
    RowsFailedError,
    advice,
)
from datamill.pipeline.budget import Budget, check_budget_config
from datamill.pipeline.estimate import PipelineEstimate, estimate_plan
from datamill.pipeline.executors import Executor, resolve_executor
from datamill.pipeline.pending import install_pending_exit_hook
from datamill.pipeline.plan import StepPlan, build_plan, compute_fingerprints, validate_keys
from datamill.pipeline.progress import ProgressSink, choose_progress, notify_stopped
from datamill.pipeline.reconcile import reconcile
from datamill.pipeline.results import read_step_table
from datamill.pipeline.runner import FAILURE_SAMPLES, PipelineRunner
from datamill.pipeline.state_check import check_state_database
from datamill.pipeline.storage import BatchedFileStorage
from datamill.pipeline.summary import RunSummary, StepSummary

log = logging.getLogger("datamill")

DEFAULT_BATCH_SIZE = 64


class BatchedPipelineABC:
    """Base class of every datamill pipeline.

    Class attributes a pipeline may override:
      ``allowed_failure_fraction`` — failed rows tolerated (as a fraction of the input rows)
      before ``forward()`` raises ``RowsFailedError``; 0 by default: any failed row raises
      after the run, once everything else is committed.
      ``max_cost_usd`` — the most the pipeline's cache may record as spent (all runs together);
      when reached, the run commits its batches in flight and raises ``BudgetExceededError``.
      None (the default) means no budget. ``forward(max_cost_usd=...)`` overrides it.
      ``executor`` — where local steps' batches are computed: None or ``"in-process"`` (the
      default), ``"ray"``, or an executor such as ``RayExecutor(address="auto")``
      (``datamill.pipeline.executors``; docs/scale-out.md). ``forward(executor=...)`` overrides it.
    """

    allowed_failure_fraction: float = 0.0
    max_cost_usd: float | None = None
    executor: Executor | str | None = None
    # Defaults on the class too, so a subclass whose __init__ skips super().__init__() works.
    _plan: list[StepPlan] | None = None
    _storage: BatchedFileStorage | None = None
    last_summary: RunSummary | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        user_forward = cls.__dict__.get("forward")
        if user_forward is not None and user_forward is not BatchedPipelineABC.forward:
            cls._user_forward = user_forward  # type: ignore[attr-defined]
            cls.forward = BatchedPipelineABC.forward  # type: ignore[method-assign]

    def __init__(self) -> None:
        self._plan: list[StepPlan] | None = None
        self._storage: BatchedFileStorage | None = None
        self.last_summary: RunSummary | None = None

    # --- compile ----------------------------------------------------------------------

    def compile(self) -> BatchedPipelineABC:
        """Trace ``forward()`` without running anything and validate every input key."""
        storages = [value for value in vars(self).values() if isinstance(value, BatchedFileStorage)]
        if not storages:
            raise ConfigError("the pipeline has no BatchedFileStorage attribute: create one in __init__")
        for storage in storages:
            storage.begin_trace()
        try:
            user_forward = getattr(type(self), "_user_forward", None)
            if user_forward is None:
                raise ConfigError(f"{type(self).__name__} must define forward() wiring its operators")
            user_forward(self)
        finally:
            traces = {id(storage): storage.end_trace() for storage in storages}
        used = [storage for storage in storages if traces[id(storage)]]
        if len(used) > 1:
            raise ConfigError("forward() used more than one storage; a pipeline runs over one storage")
        storage = used[0] if used else storages[0]
        plan = build_plan(storage, traces[id(storage)])
        validate_keys(plan, storage.input_path)
        self._storage, self._plan = storage, plan
        return self

    # --- run --------------------------------------------------------------------------

    def forward(
        self,
        batch_size: int = DEFAULT_BATCH_SIZE,
        resume_from_last: bool | None = None,
        resume_step: int | None = None,
        *,
        progress: ProgressSink | bool | None = None,
        max_cost_usd: float | None = None,
        executor: Executor | str | None = None,
    ) -> RunSummary:
        """Run every step over the whole dataset, one committed batch at a time.

        ``resume_from_last`` (the default) continues after the last committed batch and
        retries failed rows; ``resume_from_last=False`` starts over (cached responses are
        reused); ``resume_step=k`` reruns from operator k (0-based), keeping earlier steps.
        Returns the run summary; raises ``RowsFailedError`` at the end if more rows failed
        than ``allowed_failure_fraction`` allows, and ``BudgetExceededError`` (carrying the
        summary) when ``max_cost_usd`` is reached. ``executor`` says where local steps'
        batches are computed (see the class docstring); it never changes what is written.

        ``progress``: by default a live display on a terminal or in a notebook (rows, rows/s,
        ETA, in flight, retries, spend), the resume point, every recompute reason and a
        summary at the end; ``progress=False`` (or ``logging.getLogger("datamill")`` set
        above INFO) keeps it quiet; a ``ProgressSink`` receives the events instead.

        Offline batch jobs still running raise ``OfflineBatchGenerationNotFinished`` (catch it
        to tell that jobs are pending); left uncaught in a script, it ends the script with one
        short message and exit status 75 instead of a traceback (``datamill.pipeline.pending``).
        """
        if resume_step is not None and resume_from_last:
            raise ConfigError("pass either resume_from_last=True or resume_step=k, not both")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if self._plan is None:
            self.compile()
        assert self._plan is not None and self._storage is not None
        sink = choose_progress(progress)
        try:
            summary = _run(
                self._storage,
                self._plan,
                batch_size=batch_size,
                resume_from_last=resume_from_last is not False,
                resume_step=resume_step,
                progress=sink,
                max_cost_usd=max_cost_usd if max_cost_usd is not None else self.max_cost_usd,
                executor=resolve_executor(executor if executor is not None else self.executor),
            )
        except BaseException as exc:
            notify_stopped(sink, exc)
            if isinstance(exc, OfflineBatchGenerationNotFinished):
                install_pending_exit_hook()
            raise
        self.last_summary = summary
        self._raise_if_too_many_failures(summary)
        return summary

    def _raise_if_too_many_failures(self, summary: RunSummary) -> None:
        failed = summary.rows_failed
        if not failed:
            return
        total = summary.steps[0].rows_in if summary.steps else 0
        if total and failed / total <= self.allowed_failure_fraction:
            log.warning(
                "%d rows failed (allowed fraction %.3f); see datamill status",
                failed,
                self.allowed_failure_fraction,
            )
            return
        inputs = {step.index: step.input_path for step in self._plan or []}
        samples = [
            f"step {s.index} ({s.name}), input row {row + 1} of {inputs.get(s.index, '?')}: {err}"
            for s in summary.steps
            for row, err in s.failure_samples
        ][:5]
        raise RowsFailedError(
            f"{failed} row(s) failed and were not written; they are recorded in the state database and "
            f"are retried by {advice('retry_failed')}. First errors:\n  " + "\n  ".join(samples),
            summary=summary,
        )

    def estimate(self, *, completion_tokens: tuple[int, int] | None = None) -> PipelineEstimate:
        """What the rest of the run would send and may cost, without sending anything.

        Counts the prompt tokens of every request still to be sent (rows after each step's
        last commit, minus requests in the request cache); steps whose input does not exist
        yet are estimated from the upstream row count (``exact=False``). Costs are a range
        over ``completion_tokens=(low, high)`` per sample (default: 64 to ``max_tokens`` or
        1024). See ``datamill.pipeline.estimate``.
        """
        plan = self._require_plan()
        assert self._storage is not None
        return estimate_plan(plan, self._storage.state_path, completion_tokens=completion_tokens)

    # --- results ----------------------------------------------------------------------

    def step_paths(self) -> list[Path]:
        """The output file (or Parquet directory) of each step, in order, holding committed
        rows only: what a stopped run appended after its last commit is cut off first."""
        plan = self._require_plan()
        assert self._storage is not None
        self._storage.drop_uncommitted(len(plan))
        return [step.output_path for step in plan]

    def rows(self, step: int = -1) -> Iterator[Row]:
        """The committed rows of a step (the last step by default), streamed from its file."""
        plan = self._require_plan()
        assert self._storage is not None
        index = plan[step].index
        return self._storage.iter_step_rows(index)

    def to_arrow(self, step: int = -1) -> Any:
        """The step's committed rows as a ``pyarrow.Table``, read by Arrow from the step file."""
        plan = self._require_plan()
        assert self._storage is not None
        return read_step_table(self._storage, plan[step])

    def to_pandas(self, step: int = -1) -> Any:
        """The step's committed rows as a pandas DataFrame, through Arrow (``datamill[pandas]``)."""
        try:
            import pandas  # noqa: F401  (imported to fail early and kindly)
        except ImportError:
            raise ConfigError("to_pandas() needs pandas: pip install 'datamill[pandas]'") from None
        return self.to_arrow(step).to_pandas()

    def to_hf_dataset(self, step: int = -1) -> Any:
        """The step's committed rows as a ``datasets.Dataset`` built from Arrow (``datamill[hf]``).

        ``dataset.save_to_disk(DIR)`` keeps it (as ``datamill export --format hf`` does);
        ``push_to_hub`` below publishes it.
        """
        return to_dataset(self.to_arrow(step))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        step: int = -1,
        split: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
    ) -> Any:
        """Publish the step's committed rows to the Hugging Face Hub: ``to_hf_dataset(step)``
        handed to ``datasets.Dataset.push_to_hub`` with these arguments (token from
        ``HF_TOKEN`` or ``huggingface-cli login`` when None). Needs network access to the hub.
        """
        dataset = self.to_hf_dataset(step)
        try:
            return dataset.push_to_hub(
                repo_id, split=split, private=private, token=token, commit_message=commit_message
            )
        except Exception as exc:  # huggingface_hub raises many types: offline, auth, HTTP
            raise DatamillError(
                f"push_to_hub({repo_id!r}) failed ({type(exc).__name__}: {exc}); check the network, the "
                "token (HF_TOKEN) and the repo id; to_hf_dataset().save_to_disk(DIR) keeps the rows meanwhile"
            ) from exc

    def _require_plan(self) -> list[StepPlan]:
        if self._plan is None:
            self.compile()
        assert self._plan is not None
        return self._plan


def _run(
    storage: BatchedFileStorage,
    plan: list[StepPlan],
    *,
    batch_size: int,
    resume_from_last: bool,
    resume_step: int | None,
    progress: ProgressSink,
    max_cost_usd: float | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    storage.cache_path.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with CacheLock(storage.lock_path):
        check_state_database(storage, start_over=not resume_from_last and resume_step is None)
        ledger = Ledger(storage.state_path)
        run_id = ledger.db.start_run(os.getpid())
        summary = RunSummary(steps=[StepSummary(step.index, step.name, _model_of(step)) for step in plan])
        summary.output_path = str(plan[-1].output_path)
        try:
            ledger.recover(run_id)
            compute_fingerprints(plan, storage)
            decision = reconcile(ledger.db, plan, resume_from_last=resume_from_last, resume_step=resume_step)
            for index, reasons in sorted(decision.reasons.items()):
                summary.steps[index].changes = reasons
                log.info("step %d (%s) will be recomputed: %s", index, plan[index].name, "; ".join(reasons))
            for step in plan:
                summary.steps[step.index].spend_before_run = ledger.db.spend(step=step.index)
            pending = [s for s in plan if (ledger.db.load_step(s.index) or {}).get("status") != "done"]
            if not pending:
                summary.already_complete = True
                log.info("pipeline is already complete: nothing to send; output in %s", summary.output_path)
            else:
                runner = PipelineRunner(
                    plan,
                    ledger,
                    summary,
                    batch_size=batch_size,
                    progress=progress,
                    budget=make_budget(max_cost_usd, plan, ledger),
                    executor=executor,
                )
                _run_coroutine(runner.run)
            summary.status = "failed_rows" if summary.rows_failed else "complete"
        except BudgetExceededError as exc:
            summary.status = "budget_exceeded"
            exc.summary = summary
            raise
        except BaseException as exc:
            summary.status = (
                "interrupted"
                if isinstance(exc, KeyboardInterrupt)
                else "offline_pending"
                if isinstance(exc, OfflineBatchGenerationNotFinished)
                else "error"
            )
            raise
        finally:
            summary.seconds = time.monotonic() - started
            try:
                ledger.join_writer()
                for step in plan:
                    _fill_totals(ledger, step, summary.steps[step.index])
                ledger.db.finish_run(run_id, summary.status, summary.to_dict())
            finally:
                ledger.close()
        progress.run_finished(summary)
        return summary


def make_budget(max_cost_usd: float | None, plan: list[StepPlan], ledger: Ledger) -> Budget | None:
    """The run's ``Budget``: the cap, and what the cache already records as spent."""
    if max_cost_usd is None:
        return None
    servings = {
        id(s): s for s in (getattr(step.operator, "llm_serving", None) for step in plan) if s is not None
    }
    check_budget_config(max_cost_usd, list(servings.values()))
    return Budget(max_cost_usd, spent_before=ledger.db.spend())


def _model_of(step: StepPlan) -> str:
    """The model a step's tokens and cost belong to ("" for steps that call none)."""
    serving = getattr(step.operator, "llm_serving", None)
    return str(getattr(serving, "model_name", "") or "")


def _fill_totals(ledger: Ledger, step: StepPlan, summary: StepSummary) -> None:
    """The step's final figures: this run's spend (the ledger's tally, responses drained after
    the last commit included) and the committed totals."""
    state = ledger.db
    stored = state.load_step(step.index) or {}
    summary.status = stored.get("status", summary.status)
    summary.take_run_spend(ledger.run_spend.get(step.index))
    summary.load_totals(state.step_totals(step.index), state.failures(step.index, limit=FAILURE_SAMPLES))
    summary.drop_reasons = state.drop_reasons(step.index)


def _run_coroutine(factory: Callable[[], Any]) -> None:
    """Run the engine's coroutine, also from inside a running loop (a notebook).

    The loop is looked for apart from running the coroutine, so no error of the run is
    chained to the ``RuntimeError`` that says there is no running loop.
    """
    try:
        asyncio.get_running_loop()
        inside_loop = True
    except RuntimeError:
        inside_loop = False
    if not inside_loop:
        asyncio.run(factory())
        return
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(factory())
        except BaseException as exc:  # handed back to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="datamill-run")
    thread.start()
    thread.join()
    if error:
        raise error[0]
