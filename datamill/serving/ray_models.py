"""Local-model servings on Ray: each model replica is a Ray actor that loads the model once.

The Ray executor (``datamill.pipeline.ray_executor``) gives a ``RayModelPool`` to every local
serving of a run (``LocalModelLLMServing_transformers`` / ``_vllm``) through
``serving.generate_remotely``. The serving keeps its place on the driver: requests still go
through the dispatcher, which answers from the request cache, joins identical requests and
stores every fresh answer — only the generation of a micro-batch happens on an actor. Actors
receive requests and return responses; they never see the cache directory.

Placement: a GPU serving (``device="cuda"`` or vLLM) gets one replica per GPU of the cluster by
default, each reserving ``gpus_per_model`` GPUs (vLLM's ``tensor_parallel_size`` when set,
else 1). With tensor parallelism above 1 a replica reserves a placement group of that many GPU
bundles on one node and vLLM runs its tensor-parallel workers inside it (its Ray backend). A
CPU serving gets one replica by default. Actors are created on the first micro-batch, so a
run's CPU steps keep every core until the model step begins, and live until the run ends.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import Any

from datamill.errors import ConfigError, ServingError
from datamill.serving.local_transformers import LocalModelLLMServing_transformers
from datamill.serving.types import GenericRequest, GenericResponse

INSTALL_HINT = "pip install 'datamill[ray]'"
#: Micro-batches queued per replica: one generating, one waiting, so a replica never idles
#: while the next batch travels to it.
BATCHES_PER_REPLICA = 2


def import_ray() -> Any:
    """The ``ray`` module, or a ``ConfigError`` saying what to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"the Ray executor needs ray: {INSTALL_HINT} ({exc})") from None
    return ray


class ModelReplica:
    """The body of one model actor: loads the serving's model once, then generates batches."""

    def __init__(self, serving: LocalModelLLMServing_transformers) -> None:
        serving.load_model()
        self.serving = serving

    def generate(self, requests: list[GenericRequest]) -> list[GenericResponse]:
        return self.serving.generate_batch(requests)


@dataclass(frozen=True)
class ReplicaPlan:
    """How many model actors a serving gets and what each reserves."""

    replicas: int
    gpus: float
    tensor_parallel_size: int


def plan_replicas(
    serving: LocalModelLLMServing_transformers,
    cluster_gpus: float,
    *,
    replicas: int | None,
    gpus_per_model: float | None,
) -> ReplicaPlan:
    """Replicas and resources for ``serving`` on a cluster with ``cluster_gpus`` GPUs."""
    engine_args = getattr(serving, "engine_args", None) or {}
    tensor_parallel = int(engine_args.get("tensor_parallel_size") or 1)
    on_gpu = str(serving.device).startswith("cuda")
    gpus = gpus_per_model if gpus_per_model is not None else (float(tensor_parallel) if on_gpu else 0.0)
    if replicas is None:
        if gpus <= 0:
            replicas = 1
        else:
            replicas = int(cluster_gpus // gpus)
            if replicas < 1:
                raise ConfigError(
                    f"model {serving.model_name!r} needs {gpus:g} GPU(s) per replica but the Ray cluster "
                    f"has {cluster_gpus:g}: add GPU nodes (ray start --address=...) or pass "
                    "RayExecutor(gpus_per_model=...)"
                )
    if replicas < 1:
        raise ConfigError(f"model_replicas must be at least 1, got {replicas}")
    return ReplicaPlan(replicas, gpus, tensor_parallel)


class RayModelPool:
    """The model actors of one serving; ``generate`` sends a micro-batch to the least busy."""

    def __init__(self, serving: LocalModelLLMServing_transformers, plan: ReplicaPlan, *, max_restarts: int):
        self.serving = serving
        self.plan = plan
        self.max_restarts = max_restarts
        self._ray = import_ray()
        self._actors: list[Any] = []
        self._groups: list[Any] = []
        self._busy: list[int] = []
        self._starting: asyncio.Lock | None = None
        # An actor that died (past its restarts) or is restarting; older Rays lack the second.
        self._actor_errors = tuple(
            getattr(self._ray.exceptions, name)
            for name in ("RayActorError", "ActorUnavailableError")
            if hasattr(self._ray.exceptions, name)
        )

    @property
    def parallel(self) -> int:
        """Micro-batches the serving may have in flight at once."""
        return self.plan.replicas * BATCHES_PER_REPLICA

    async def generate(self, requests: list[GenericRequest]) -> list[GenericResponse]:
        await self._ensure_actors()
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            return await self._actors[index].generate.remote(requests)
        except self._actor_errors as exc:
            raise ServingError(
                f"model replica {index} of {self.serving.model_name!r} stopped "
                f"({type(exc).__name__}: {str(exc)[:300]}); the micro-batch is retried",
                retryable=True,
            ) from exc
        finally:
            self._busy[index] -= 1

    def shutdown(self) -> None:
        """Stop every actor and free its GPUs."""
        actors, self._actors, self._busy = self._actors, [], []
        for actor in actors:
            self._ray.kill(actor)
        groups, self._groups = self._groups, []
        for group in groups:
            self._ray.util.remove_placement_group(group)

    async def _ensure_actors(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._actors:
                return
            actor_class = self._ray.remote(ModelReplica)
            for _ in range(self.plan.replicas):
                self._actors.append(await self._start_actor(actor_class))
                self._busy.append(0)

    async def _start_actor(self, actor_class: Any) -> Any:
        options: dict[str, Any] = {  # a GPU replica's CPU work is feeding its GPU
            "num_cpus": 0 if self.plan.gpus > 0 else 1,
            "num_gpus": self.plan.gpus,
            "max_restarts": self.max_restarts,
            "max_task_retries": self.max_restarts,
        }
        serving = copy.copy(self.serving)  # its configuration only (see __getstate__)
        if self.plan.tensor_parallel_size > 1:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            bundles = [{"GPU": 1.0, "CPU": 1.0}] * self.plan.tensor_parallel_size
            group = self._ray.util.placement_group(bundles, strategy="STRICT_PACK")
            await group.ready()
            self._groups.append(group)
            options.update(
                num_gpus=0,
                num_cpus=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    group, placement_group_capture_child_tasks=True
                ),
            )
            serving.engine_args = {**serving.engine_args, "distributed_executor_backend": "ray"}
        return actor_class.options(**options).remote(serving)
