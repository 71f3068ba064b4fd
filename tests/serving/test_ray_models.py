"""Placement of local-model replicas on Ray: one per GPU by default, tensor parallelism taking
several, CPU models one. (The actors themselves are exercised in tests/pipeline/test_ray_executor.py.)"""

from __future__ import annotations

import pickle

import pytest

from datamill.errors import ConfigError
from datamill.serving.local_transformers import LocalModelLLMServing_transformers
from datamill.serving.local_vllm import LocalModelLLMServing_vllm
from datamill.serving.ray_models import ReplicaPlan, plan_replicas


def test_a_gpu_model_gets_one_replica_per_gpu_and_tensor_parallelism_divides_them() -> None:
    single = LocalModelLLMServing_vllm("/models/m")
    assert plan_replicas(single, 8.0, replicas=None, gpus_per_model=None) == ReplicaPlan(8, 1.0, 1)
    wide = LocalModelLLMServing_vllm("/models/m", engine_args={"tensor_parallel_size": 2})
    assert plan_replicas(wide, 8.0, replicas=None, gpus_per_model=None) == ReplicaPlan(4, 2.0, 2)
    assert plan_replicas(single, 2.0, replicas=None, gpus_per_model=0.5) == ReplicaPlan(4, 0.5, 1)
    assert plan_replicas(single, 8.0, replicas=3, gpus_per_model=None) == ReplicaPlan(3, 1.0, 1)


def test_a_gpu_model_on_a_cluster_without_enough_gpus_is_a_config_error() -> None:
    wide = LocalModelLLMServing_vllm("/models/m", engine_args={"tensor_parallel_size": 4})
    with pytest.raises(ConfigError, match=r"needs 4 GPU\(s\) per replica but the Ray cluster has 2"):
        plan_replicas(wide, 2.0, replicas=None, gpus_per_model=None)


def test_a_cpu_model_gets_one_replica_without_gpus() -> None:
    serving = LocalModelLLMServing_transformers("tiny", model=object(), tokenizer=object())
    assert plan_replicas(serving, 0.0, replicas=None, gpus_per_model=None) == ReplicaPlan(1, 0.0, 1)


def test_a_serving_travels_as_its_configuration_and_generates_remotely_until_detached() -> None:
    serving = LocalModelLLMServing_transformers("tiny", model="model", tokenizer="tokenizer", batch_size=4)

    async def generate(requests):  # type: ignore[no-untyped-def]
        return []

    serving.generate_remotely(generate, parallel=3)
    assert serving.max_workers == 4 * 2 * 3
    copy = pickle.loads(pickle.dumps(serving))
    assert copy._remote is None and copy._model == "model" and copy.params == serving.params
    serving.generate_remotely(None)
    assert serving.max_workers == 4 * 2 and serving._remote is None
