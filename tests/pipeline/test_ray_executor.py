"""The Ray executor: the same rows as in-process, workers and drivers killed, local models as actors.

One local Ray (2 CPUs) serves the whole module; it takes seconds to start, so the tests are
few. The driver-kill test runs the pipeline in subprocesses that join this Ray through
``RAY_ADDRESS``, as a user's driver joins a cluster.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
import ray_pipeline
from engine_helpers import read_jsonl
from helpers.stored_keys import stored_response_keys
from helpers.subprocess_runs import run_pipeline_script
from ray_pipeline import FourStepPipeline, digest, expected_ids, write_input

from datamill import MapOperator
from datamill.errors import ConfigError, ExecutorError

ray = pytest.importorskip("ray", reason="needs ray: pip install 'datamill[ray]'")

from datamill.pipeline.ray_executor import RayExecutor  # noqa: E402 - after the skip

ROWS = 160
KILL_TEXT = "text number 37 of the Ray tests"


@pytest.fixture(scope="module")
def ray_address() -> Any:
    # Test modules are not importable on Ray workers: send the helper's functions by value,
    # as a user's __main__ script is sent.
    ray.cloudpickle.register_pickle_by_value(ray_pipeline)
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="datamill-tests")
    yield context.address_info["gcs_address"]
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(ray_pipeline)


def step_rows(pipeline: FourStepPipeline) -> list[list[dict[str, Any]]]:
    return [read_jsonl(path) for path in pipeline.step_paths()]


def test_ray_computes_the_same_rows_as_in_process_for_map_filter_dedup_and_llm_steps(
    ray_address: str, simulator: Any, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    url = simulator.openai_base + "/chat/completions"
    local = FourStepPipeline(source, tmp_path / "local", url)
    local_summary = local.forward(batch_size=7)
    on_ray = FourStepPipeline(source, tmp_path / "ray", url)
    ray_summary = on_ray.forward(batch_size=7, executor="ray")

    assert step_rows(on_ray) == step_rows(local)
    assert [[row["id"] for row in rows] for rows in step_rows(on_ray)] == expected_ids(ROWS)
    assert step_rows(on_ray)[0][5]["digest"] == digest(step_rows(on_ray)[0][5]["text"])
    for ours, theirs in zip(ray_summary.steps, local_summary.steps, strict=True):
        assert (ours.rows_in, ours.rows_out, ours.rows_failed, ours.rows_dropped) == (
            theirs.rows_in,
            theirs.rows_out,
            theirs.rows_failed,
            theirs.rows_dropped,
        )


def _kill_once_at(marker: str, text: str) -> Any:
    """A map function that SIGKILLs its own worker process the first time it meets ``text``."""

    def count_words(value: str) -> int:
        if value == text:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return len(value.split())

    return count_words


def test_a_worker_killed_mid_batch_is_retried_and_every_row_commits_once(
    ray_address: str, simulator: Any, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", 60)
    url = simulator.openai_base + "/chat/completions"
    marker = tmp_path / "killed"
    assert write_input(tmp_path / "probe.jsonl", 60).read_text().count(KILL_TEXT) == 1  # row 37

    # Without retries the step stops at the killed batch, with the batches before it committed.
    pipeline = FourStepPipeline(
        source, tmp_path / "cache", url, digest_fn=_kill_once_at(str(marker), KILL_TEXT)
    )
    with pytest.raises(ExecutorError, match=r"input rows 35\.\.39 failed after 0 retries"):
        pipeline.forward(batch_size=5, executor=RayExecutor(max_retries=0, max_in_flight=1))
    assert int(marker.read_text()) != os.getpid()
    assert [row["id"] for row in read_jsonl(pipeline.step_paths()[0])] == list(range(35))

    # With retries Ray reruns the batch on a fresh worker; the resumed step commits it once.
    marker.unlink()
    pipeline = FourStepPipeline(
        source, tmp_path / "cache", url, digest_fn=_kill_once_at(str(marker), KILL_TEXT)
    )
    summary = pipeline.forward(batch_size=5, executor=RayExecutor(max_retries=2))
    assert marker.exists() and summary.rows_failed == 0
    first = read_jsonl(pipeline.step_paths()[0])
    assert [row["id"] for row in first] == list(range(60))
    assert all(row["digest"] == len(row["text"].split()) for row in first)
    assert [[row["id"] for row in rows] for rows in step_rows(pipeline)] == expected_ids(60)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_driver_killed_at_random_points_resumes_every_row_once_and_buys_no_answer_twice(
    ray_address: str, make_simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", ray_address)  # the subprocesses join this Ray as drivers
    sim = make_simulator(latency_mean=0.02, latency_jitter=0.01)
    url = sim.openai_base + "/chat/completions"
    source = write_input(tmp_path / "in.jsonl", ROWS)
    cache = tmp_path / "cache"
    script = Path(ray_pipeline.__file__)
    rng = random.Random(17)
    # SIGKILL once a step file holds a random number of rows: twice while Ray computes the
    # map and the filter (tasks in flight), once in the LLM step.
    kills = [(1, rng.randrange(1, ROWS - 20)), (2, rng.randrange(1, 100)), (4, rng.randrange(1, 30))]
    stored: set[str] = set()
    killed = 0
    for step, rows in [*kills, (None, 0)]:
        before = sim.stats(detail=True)["answered_by_client_key"]
        kill_when = (
            None
            if step is None
            else (lambda path=cache / f"four_step{step}.jsonl", n=rows: _lines(path) >= n)
        )
        code = run_pipeline_script(
            script, source, cache, url, rng.choice([3, 8, 16]), timeout=120, kill_when=kill_when
        )
        killed += code == -signal.SIGKILL
        after = sim.stats(detail=True)["answered_by_client_key"]
        answered = {key for key, n in after.items() if n > before.get(key, 0)}
        assert not answered & stored, "a response stored before a kill was bought again"
        stored = stored_response_keys(cache, "four")
    assert code == 0 and killed == len(kills)
    outputs = [read_jsonl(cache / f"four_step{index}.jsonl") for index in range(1, 5)]
    assert [[row["id"] for row in rows] for rows in outputs] == expected_ids(ROWS)
    assert all(row["digest"] == digest(row["text"]) for row in outputs[0])
    assert all(row["answer"].endswith(row["text"]) for row in outputs[3])


def test_an_operator_that_cannot_be_pickled_is_a_config_error_naming_the_step(
    ray_address: str, tmp_path: Path
) -> None:
    import threading

    lock = threading.Lock()
    source = write_input(tmp_path / "in.jsonl", 4)
    pipeline = FourStepPipeline(source, tmp_path / "cache", "http://127.0.0.1:9/v1")
    pipeline.digest = MapOperator(lambda text: str(lock))
    with pytest.raises(ConfigError, match=r"step 0 \(MapOperator\): the operator cannot be sent to Ray"):
        pipeline.forward(batch_size=2, executor="ray")


HAVE_LOCAL = all(importlib.util.find_spec(name) for name in ("torch", "transformers", "tokenizers"))


@pytest.mark.skipif(not HAVE_LOCAL, reason="needs torch and transformers: pip install 'datamill[local]'")
def test_a_local_model_runs_in_a_ray_actor_and_answers_as_in_process(
    ray_address: str, tmp_path: Path
) -> None:
    import torch

    from datamill.serving.local_transformers import LocalModelLLMServing_transformers
    from tests.serving.serving_helpers import OneStepPipeline, write_rows
    from tests.serving.test_local_models import tiny_model_and_tokenizer

    source = write_rows(tmp_path / "in.jsonl", 10)
    outputs, driver_forwards = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the one-CPU actor, so that greedy decoding matches bit for bit
    try:
        for name, executor in (("local", None), ("ray", RayExecutor(model_replicas=1))):
            model, tokenizer = tiny_model_and_tokenizer()
            forwards: list[int] = []
            model.register_forward_hook(lambda *_, seen=forwards: seen.append(1))  # where it runs
            # Micro-batches of one request: no padding, so batch composition cannot matter.
            serving = LocalModelLLMServing_transformers(
                "tiny", model=model, tokenizer=tokenizer, max_tokens=6, batch_size=1
            )
            pipeline = OneStepPipeline(source, tmp_path / name, serving)
            summary = pipeline.forward(batch_size=4, executor=executor)
            assert summary.steps[0].requests_sent == 10 and summary.rows_failed == 0
            outputs.append(read_jsonl(pipeline.step_paths()[-1]))
            driver_forwards.append(len(forwards))
    finally:
        torch.set_num_threads(threads)
    assert outputs[1] == outputs[0]
    assert driver_forwards[0] > 0 and driver_forwards[1] == 0  # on Ray the actor's copy generated


def _cuda_and_vllm() -> bool:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_and_vllm(), reason="needs vllm and a CUDA GPU (none here)")
def test_vllm_runs_one_ray_actor_per_gpu(ray_address: str, tmp_path: Path) -> None:  # pragma: no cover
    from datamill.serving.local_vllm import LocalModelLLMServing_vllm
    from tests.serving.serving_helpers import OneStepPipeline, write_rows

    model = os.environ.get("DATAMILL_VLLM_TEST_MODEL")
    if not model:
        pytest.skip("set DATAMILL_VLLM_TEST_MODEL to a local model directory to run the vLLM test")
    serving = LocalModelLLMServing_vllm(model, max_tokens=8, engine_args={"gpu_memory_utilization": 0.3})
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 16), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=8, executor="ray")
    assert summary.rows_failed == 0 and len(read_jsonl(pipeline.step_paths()[-1])) == 16
