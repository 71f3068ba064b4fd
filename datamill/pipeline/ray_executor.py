"""``RayExecutor``: row-local batches as Ray tasks, local models as Ray actors.

What runs where (docs/scale-out.md):

* **Row-local operators** (maps, filters, user ``MapOperator``s): each batch is one Ray task.
  The operator is put in the object store once per step and kept by each worker process for
  the step (so a filter that loads a model lazily loads it once per worker, not per batch);
  the batch's rows travel with the task and its outcomes come back. At most
  ``max_in_flight`` batches are out at once and results are taken in input order, so the
  driver never holds more than ``max_in_flight × batch_size`` uncomputed rows plus the
  committer's own bounded backlog. A worker process that dies mid-batch (SIGKILL, the OOM
  killer, a lost node) is retried by Ray up to ``max_retries`` times; the batch is committed
  once, by the driver, whichever attempt computed it.
* **Whole-dataset operators** (``row_local = False``: the deduplicators) stay on the driver:
  their ``prepare`` pass builds per-row state over the whole input that every batch reads,
  and shipping it to each task would cost more than the lookups it serves.
* **LLM steps** stay on the driver: the dispatcher, the request cache and the send lanes live
  there, and one process already sends far more requests a second than any provider's limits
  allow. A **local-model serving** (transformers, vLLM) is the exception that needs hardware:
  its model runs in Ray actors, one per GPU by default (``datamill.serving.ray_models``), while
  its requests and answers still pass through the driver's dispatcher and request cache.

Workers never open the cache directory; only the driver commits. ``import datamill`` does not
import Ray: this module imports it when an executor starts.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import aclosing
from typing import Any

from datamill.errors import ConfigError, ExecutorError
from datamill.operators.base import Operator, Outcome
from datamill.pipeline.executors import BatchInput, InProcessExecutor
from datamill.serving.base import LLMServingABC
from datamill.serving.local_transformers import LocalModelLLMServing_transformers
from datamill.serving.ray_models import RayModelPool, import_ray, plan_replicas

log = logging.getLogger(__name__)

#: Operators a worker process keeps deserialized (one per step in flight, a few steps back).
OPERATORS_KEPT = 4
_worker_operators: OrderedDict[str, Operator] = OrderedDict()


def compute_batch(
    token: str, holder: list[Any], rows: list[Any], first_row: int, call: dict
) -> list[Outcome]:
    """The Ray task: one batch's outcomes. ``holder`` wraps the operator's object reference so
    that Ray passes the reference rather than a fresh copy, and each worker process fetches
    and deserializes the operator once per step (``token``)."""
    op = _worker_operators.get(token)
    if op is None:
        op = import_ray().get(holder[0])
        _worker_operators[token] = op
        while len(_worker_operators) > OPERATORS_KEPT:
            _worker_operators.popitem(last=False)
    else:
        _worker_operators.move_to_end(token)
    return op.process_rows(rows, first_row, call)


class RayExecutor:
    """Compute row-local steps on Ray and host local models in Ray actors.

    ``address``: None starts a Ray instance in this process for the run (``num_cpus`` /
    ``num_gpus`` size it; default: the whole machine) unless ``RAY_ADDRESS`` is set, which is
    then used; ``"auto"`` joins the cluster started on this machine by ``ray start``;
    ``"ray://host:10001"`` connects through Ray Client; ``"host:6379"`` joins a cluster's GCS.
    A Ray already initialised in this process is used as it is.

    ``cpus_per_task``: CPUs each batch task reserves. ``max_in_flight``: batches out at once
    (default: twice the cluster's task slots). ``max_retries``: how often Ray reruns a batch
    whose worker died (and restarts a model actor). ``model_replicas`` / ``gpus_per_model``:
    model actors per local serving and GPUs each (default: one per GPU, vLLM's
    ``tensor_parallel_size`` GPUs each). ``runtime_env``: Ray's runtime environment for the
    workers (e.g. ``{"working_dir": "."}`` to ship a project's modules to a cluster).
    ``temp_dir``: Ray's session folder when starting Ray here (default ``/tmp/ray``).

    Ray is joined when a run first needs it (a local-model serving, a row-local batch) and
    stays connected after the run (a later run reuses it); ``shutdown()`` disconnects.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        cpus_per_task: float = 1.0,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        model_replicas: int | None = None,
        gpus_per_model: float | None = None,
        runtime_env: dict[str, Any] | None = None,
        temp_dir: str | None = None,
    ) -> None:
        if cpus_per_task <= 0:
            raise ConfigError(f"cpus_per_task must be positive, got {cpus_per_task}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        if address is not None and (num_cpus is not None or num_gpus is not None):
            raise ConfigError(
                "num_cpus/num_gpus size a Ray started here; a cluster at an address has its own "
                "resources: drop them, or set them on `ray start`"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.cpus_per_task = cpus_per_task
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.model_replicas = model_replicas
        self.gpus_per_model = gpus_per_model
        self.runtime_env = runtime_env
        self.temp_dir = temp_dir
        self._ray: Any = None
        self._task: Any = None
        self._cluster: dict[str, float] | None = None
        self._in_flight_limit = 1
        self._pools: list[RayModelPool] = []
        self._driver = InProcessExecutor()

    async def start(self, servings: Sequence[LLMServingABC]) -> None:
        """Give every local-model serving its Ray actors. Ray is joined here only for them;
        otherwise on the first row-local batch, so a run with nothing for Ray never starts it."""
        for serving in servings:
            if isinstance(serving, LocalModelLLMServing_transformers):
                cluster = self._join()
                plan = plan_replicas(
                    serving,
                    float(cluster.get("GPU", 0)),
                    replicas=self.model_replicas,
                    gpus_per_model=self.gpus_per_model,
                )
                pool = RayModelPool(serving, plan, max_restarts=self.max_retries)
                serving.generate_remotely(pool.generate, parallel=pool.parallel)
                self._pools.append(pool)
                log.info(
                    "model %s: %d Ray actor(s), %g GPU(s) each", serving.model_name, plan.replicas, plan.gpus
                )

    async def close(self) -> None:
        pools, self._pools = self._pools, []
        for pool in pools:
            pool.serving.generate_remotely(None)
            pool.shutdown()

    def shutdown(self) -> None:
        """Disconnect from Ray (and stop the instance if this process started it)."""
        if self._ray is not None:
            self._ray.shutdown()
            self._ray, self._task, self._cluster = None, None, None

    async def map_batches(
        self, op: Operator, call: dict[str, Any], batches: Iterable[BatchInput], *, label: str
    ) -> AsyncGenerator[tuple[BatchInput, list[Outcome]], None]:
        if not op.row_local:  # whole-dataset state stays with the driver (see the module docstring)
            async with aclosing(self._driver.map_batches(op, call, batches, label=label)) as computed:
                async for item in computed:
                    yield item
            return
        self._join()
        holder = [self._put_operator(op, label)]
        token = uuid.uuid4().hex
        in_flight: deque[tuple[BatchInput, Any]] = deque()
        try:
            for batch in batches:
                ref = self._task.remote(token, holder, batch.rows, batch.first_row, call)
                in_flight.append((batch, ref))
                if len(in_flight) >= self._in_flight_limit:
                    yield await self._result(*in_flight.popleft(), label)
            while in_flight:
                yield await self._result(*in_flight.popleft(), label)
        finally:
            for _, ref in in_flight:
                try:
                    self._ray.cancel(ref)
                except Exception:  # Ray already stopping: nothing left to cancel
                    break

    def _join(self) -> dict[str, float]:
        """Connect to Ray once (see the class docstring); the cluster's resources."""
        if self._cluster is None or not self._ray.is_initialized():
            ray = self._connect()
            self._task = ray.remote(compute_batch).options(
                num_cpus=self.cpus_per_task, max_retries=self.max_retries, retry_exceptions=False
            )
            self._cluster = dict(ray.cluster_resources())
            slots = max(1, int(self._cluster.get("CPU", 1) // self.cpus_per_task))
            self._in_flight_limit = self.max_in_flight or 2 * slots
            log.info(
                "Ray executor: %g CPUs, %g GPUs; up to %d batches in flight",
                self._cluster.get("CPU", 0),
                self._cluster.get("GPU", 0),
                self._in_flight_limit,
            )
        return self._cluster

    def _connect(self) -> Any:
        ray = import_ray()
        if ray.is_initialized():
            self._ray = ray
            return ray
        options: dict[str, Any] = {"runtime_env": self.runtime_env, "namespace": "datamill"}
        if self.address is not None:
            options["address"] = self.address
        elif os.environ.get("RAY_ADDRESS"):  # ray.init reads it itself
            if self.num_cpus is not None or self.num_gpus is not None:
                raise ConfigError(
                    f"RAY_ADDRESS={os.environ['RAY_ADDRESS']} points at a running cluster, whose "
                    "resources num_cpus/num_gpus cannot change: drop them or unset RAY_ADDRESS"
                )
        else:
            options.update(
                address="local",
                num_cpus=self.num_cpus,
                num_gpus=self.num_gpus,
                include_dashboard=False,
            )
            if self.temp_dir is not None:
                options["_temp_dir"] = self.temp_dir
        where = self.address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        try:
            ray.init(**options)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise ExecutorError(
                f"could not start or reach Ray at {where}: {exc}. Start a cluster with "
                "`ray start --head` (then address='auto'), fix RAY_ADDRESS, or run in-process; a "
                "cluster with token authentication also needs RAY_AUTH_MODE=token and its token "
                "in ~/.ray/auth_token here (docs/scale-out.md)"
            ) from exc
        self._ray = ray
        return ray

    def _put_operator(self, op: Operator, label: str) -> Any:
        try:
            return self._ray.put(op)
        except Exception as exc:  # Ray wraps pickling failures in several types
            raise ConfigError(
                f"{label}: the operator cannot be sent to Ray workers ({type(exc).__name__}: {exc}). "
                "Operators run on Ray must pickle with cloudpickle: keep open files, locks, "
                "connections and loaded models out of their attributes (create them lazily), "
                "or run this pipeline in-process"
            ) from exc

    async def _result(self, batch: BatchInput, ref: Any, label: str) -> tuple[BatchInput, list[Outcome]]:
        ray = self._ray
        try:
            return batch, await ref
        except ray.exceptions.RayTaskError as exc:
            # The operator itself raised: the same error as in-process, with the remote traceback.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from exc
            raise
        except ray.exceptions.RayError as exc:
            last = batch.first_row + len(batch.rows) - 1
            raise ExecutorError(
                f"{label}: the Ray task for input rows {batch.first_row}..{last} failed after "
                f"{self.max_retries} retries ({type(exc).__name__}: {exc}); the batches before it "
                "are committed: rerun to resume"
            ) from exc
