"""Local backends: transformers on CPU with a tiny model built here, vLLM only where a GPU is."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from datamill.errors import ConfigError
from tests.serving.serving_helpers import OneStepPipeline, read_jsonl, write_rows

HAVE_LOCAL = all(importlib.util.find_spec(name) for name in ("torch", "transformers", "tokenizers"))
needs_local = pytest.mark.skipif(
    not HAVE_LOCAL, reason="needs torch and transformers: pip install 'datamill[local]'"
)


def tiny_model_and_tokenizer() -> tuple[Any, Any]:
    """A 2-layer GPT-2 with random weights and a character-level tokenizer: no download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    alphabet = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate(alphabet)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=256, n_embd=32, n_layer=2, n_head=2)
    config.pad_token_id, config.eos_token_id = 0, 1
    return GPT2LMHeadModel(config), tokenizer


@needs_local
def test_transformers_serving_runs_a_pipeline_through_the_cache_and_commit_protocol(tmp_path: Path) -> None:
    from datamill.serving.local_transformers import LocalModelLLMServing_transformers

    model, tokenizer = tiny_model_and_tokenizer()
    serving = LocalModelLLMServing_transformers("tiny-gpt2", model=model, tokenizer=tokenizer, max_tokens=8)
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 12), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=5)
    out = read_jsonl(pipeline.step_paths()[-1])
    assert summary.rows_failed == 0 and [r["id"] for r in out] == list(range(12))
    assert all(isinstance(r["reply"], str) for r in out)
    assert summary.steps[0].completion_tokens > 0 and summary.cost_usd == 0.0
    assert summary.steps[0].requests_sent == 12

    again = pipeline.forward(batch_size=3, resume_from_last=False)  # every reply from the cache
    assert again.steps[0].requests_sent == 0 and again.steps[0].cache_hits == 12
    assert read_jsonl(pipeline.step_paths()[-1]) == out


@needs_local
def test_transformers_greedy_generation_is_deterministic_and_n_returns_n_texts() -> None:
    import asyncio

    from datamill.serving.local_transformers import LocalModelLLMServing_transformers

    model, tokenizer = tiny_model_and_tokenizer()
    serving = LocalModelLLMServing_transformers("tiny", model=model, tokenizer=tokenizer, max_tokens=6)

    async def run() -> list[Any]:
        await serving.start()
        try:
            one = serving.build_request([{"role": "user", "content": "abc"}])
            three = serving.build_request([{"role": "user", "content": "abc"}], n=3, temperature=1.0)
            return list(
                await asyncio.gather(serving.send_once(one), serving.send_once(one), serving.send_once(three))
            )
        finally:
            await serving.close()

    first, second, sampled = asyncio.run(run())
    assert first.texts == second.texts and len(sampled.texts) == 3
    assert first.prompt_tokens > 0


def test_vllm_serving_says_what_to_install_when_vllm_is_missing() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; the GPU test below covers it")
    from datamill.serving.local_vllm import import_vllm

    with pytest.raises(ConfigError, match="pip install 'datamill\\[vllm\\]'"):
        import_vllm()


def _has_cuda() -> bool:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs vllm and a CUDA GPU (none here)")
def test_vllm_serving_generates_a_batch_on_the_gpu(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    import os

    from datamill.serving.local_vllm import LocalModelLLMServing_vllm

    model = os.environ.get("DATAMILL_VLLM_TEST_MODEL")
    if not model:
        pytest.skip("set DATAMILL_VLLM_TEST_MODEL to a local model directory to run the vLLM test")
    serving = LocalModelLLMServing_vllm(model, max_tokens=8, engine_args={"gpu_memory_utilization": 0.3})
    pipeline = OneStepPipeline(write_rows(tmp_path / "in.jsonl", 16), tmp_path / "cache", serving)
    summary = pipeline.forward(batch_size=8)
    assert summary.rows_failed == 0 and len(read_jsonl(pipeline.step_paths()[-1])) == 16
