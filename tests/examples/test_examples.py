"""Each example in ``examples/`` runs with one command against a simulator subprocess and
writes the output it promises; rerunning one resumes and sends nothing.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datamill.operators.meta_eval import DEFAULT_DIMENSIONS
from datamill.simulator import SimulatorHandle, run_simulator_process

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIMENSIONS = [dimension["dimension_name"] for dimension in DEFAULT_DIMENSIONS]


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorHandle]:
    with run_simulator_process(batch_processing_seconds=0.3) as handle:
        yield handle


def run_example(name: str, simulator: SimulatorHandle, cache: Path, **env_vars: str) -> str:
    base = (
        simulator.anthropic_base
        if env_vars.get("DATAMILL_PROVIDER") == "anthropic"
        else simulator.openai_base
    )
    env = {**os.environ, "DATAMILL_API_BASE": base, "DATAMILL_EXAMPLE_CACHE": str(cache), **env_vars}
    env.pop("DATAMILL_FAULT", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def distinct_texts(rows: list[dict]) -> int:
    """Identical requests are sent once, so the sample's repeated sentences cost one call each."""
    return len({row["raw_content"] for row in rows})


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_translation_example_writes_three_languages_per_row(simulator, tmp_path: Path) -> None:
    simulator.reset()
    run_example("translate_three_languages.py", simulator, tmp_path)
    rows = read(tmp_path / "translate_step3.jsonl")
    assert [row["id"] for row in rows] == list(range(200))
    for row in rows:
        assert row["content_cn"].endswith(row["raw_content"]) and "Chinese" in row["content_cn"]
        assert "French" in row["content_fr"] and "German" in row["content_de"]
    assert simulator.stats()["requests"] == 3 * distinct_texts(rows)
    run_example("translate_three_languages.py", simulator, tmp_path)
    assert simulator.stats()["requests"] == 3 * distinct_texts(rows)


def test_judge_example_keeps_only_rows_scored_at_least_six(simulator, tmp_path: Path) -> None:
    stdout = run_example("generate_judge_filter.py", simulator, tmp_path)
    scored = read(tmp_path / "judge_step2.jsonl")
    kept = read(tmp_path / "judge_step3.jsonl")
    assert len(scored) == 20
    assert kept == [row for row in scored if row["score"] >= 6] and kept
    assert f"{20 - len(kept)} dropped" in stdout


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_judge_example_retries_invalid_replies_then_reports_them_on_both_providers(
    provider: str, mode: str, tmp_path: Path
) -> None:
    """Half the structured replies break their schema: each is asked again (resubmitted in
    Batch API mode), and a row whose three judge replies all break it fails and is reported,
    while the run completes."""
    offline = {"DATAMILL_POLL_SECONDS": "0.2"} if mode == "offline" else {}
    with run_simulator_process(batch_processing_seconds=0.2, invalid_reply_rate=0.5) as sim:
        stdout = run_example("generate_judge_filter.py", sim, tmp_path, DATAMILL_PROVIDER=provider, **offline)
        stats = sim.stats()
    scored = read(tmp_path / "judge_step2.jsonl")
    kept = read(tmp_path / "judge_step3.jsonl")
    failed = 20 - len(scored)
    assert (
        0 < failed <= 5
        and f"step 1 LLMScorer: 20 in, {len(scored)} out, 0 dropped, {failed} failed" in stdout
    )
    assert kept == [row for row in scored if row["score"] >= 6]
    model = "claude-haiku-4-5" if provider == "anthropic" else "gpt-4o-mini"
    assert all(row["rationale"].startswith(f"[{model}|") for row in scored)
    calls = stats["batch_requests"] if mode == "offline" else stats["requests"]
    assert calls >= 20 + 20 + 20 // 2  # explanations, first judgements, and the retries
    assert stats["requests" if mode == "offline" else "batch_requests"] == 0


def test_dedup_example_pays_only_for_distinct_prompts(simulator, tmp_path: Path) -> None:
    simulator.reset()
    run_example("generate_then_dedup.py", simulator, tmp_path)
    rows = read(tmp_path / "dedup_step3.jsonl")
    assert [row["id"] for row in rows] == [0, 1, 2, 3]
    assert all(row["description"].endswith(row["prompt"]) for row in rows)
    assert simulator.stats()["requests"] == 4


def test_offline_example_goes_through_the_batch_api(simulator, tmp_path: Path) -> None:
    simulator.reset()
    run_example("offline_batch.py", simulator, tmp_path)
    rows = read(tmp_path / "offline_step1.jsonl")
    assert [row["id"] for row in rows] == list(range(200))
    assert all(row["content_fr"].endswith(row["raw_content"]) for row in rows)
    stats = simulator.stats()
    assert stats["batches_created"] >= 1 and stats["batch_requests"] == distinct_texts(rows)
    assert stats["requests"] == 0


# --- pipelines ported from DataFlow and distilabel by changing their imports ---------------------

PORTED = EXAMPLES / "ported"
SEEDS = Path(__file__).resolve().parent / "seeds"
PORTED_ENDPOINT = "http://127.0.0.1:8000/v1"


def changed_lines(seed: str, ported: str) -> list[str]:
    """The lines that differ between a seed pipeline and its port (removed and added)."""
    return [
        line[2:].strip()
        for line in difflib.ndiff(seed.splitlines(), ported.splitlines())
        if line.startswith(("- ", "+ "))
    ]


def is_import(line: str) -> bool:
    """An import statement's line, including a name or ``)`` of a parenthesised one."""
    return line.startswith(("from ", "import ")) or re.fullmatch(r"[A-Za-z_]\w*,|\)", line) is not None


def copy_ported(tmp_path: Path, base_url: str) -> Path:
    """The ported examples and their data in a fresh directory, pointed at ``base_url``."""
    work = tmp_path / "ported"
    shutil.copytree(PORTED, work, ignore=shutil.ignore_patterns("cache_*", "__pycache__"))
    for script in work.glob("*.py"):
        script.write_text(
            script.read_text(encoding="utf-8").replace(PORTED_ENDPOINT, base_url), encoding="utf-8"
        )
    return work


def run_ported(work: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISTILABEL_CACHE_DIR": str(work / "distilabel_cache")}
    env.pop("DATAMILL_FAULT", None)
    done = subprocess.run(
        [sys.executable, name], cwd=work, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_dataflow_seed_is_ported_by_its_import_lines_and_the_endpoint_only() -> None:
    seed = (SEEDS / "dataflow_batched_pipeline.py.txt").read_text(encoding="utf-8")
    ported = (PORTED / "dataflow_batched_pipeline.py").read_text(encoding="utf-8")
    changed = [line for line in changed_lines(seed, ported) if not is_import(line)]
    assert changed == [
        'api_url="http://123.129.219.111:3000/v1/chat/completions",',
        f'api_url="{PORTED_ENDPOINT}/chat/completions",',
    ]


def test_dataflow_batched_pipeline_runs_its_three_steps_then_two_more(simulator, tmp_path: Path) -> None:
    simulator.reset()
    work = copy_ported(tmp_path, simulator.openai_base)
    run_ported(work, "dataflow_batched_pipeline.py")
    source = read(work / "dataflow/example/GeneralTextPipeline/pt_input.jsonl")
    cache = work / "cache_autoop"
    rows = read(cache / "dataflow_cache_auto_run_step3.jsonl")
    assert [row["raw_content"] for row in rows] == [row["raw_content"] for row in source]
    for row in rows:
        assert all(
            row[key].endswith(row["raw_content"]) for key in ("content_cn1", "content_cn2", "content_cn3")
        )
    assert simulator.stats()["requests"] == 3 * distinct_texts(rows)

    # Steps 4 and 5 (LLMLanguageFilter, MetaSampleEvaluator) added: the first three come from the cache.
    run_ported(work, "dataflow_batched_pipeline_scored.py")
    kept = read(cache / "dataflow_cache_auto_run_step4.jsonl")
    scored = read(cache / "dataflow_cache_auto_run_step5.jsonl")
    with sqlite3.connect(cache / "dataflow_cache_auto_run.state.db") as conn:
        drops = conn.execute("SELECT reason, rows FROM drops WHERE step = 3").fetchall()
    assert len(kept) + sum(count for _, count in drops) == len(rows)
    assert all(reason.startswith("language '") and reason.endswith("not in ['en']") for reason, _ in drops)
    assert all(row["language_label"] == "en" for row in kept)
    assert [row["raw_content"] for row in scored] == [row["raw_content"] for row in kept]
    for row in scored:
        assert all(1 <= row[name] <= 5 for name in DIMENSIONS)
    distinct_kept = len({row["raw_content"] for row in kept})
    assert simulator.stats()["requests"] == 4 * distinct_texts(rows) + distinct_kept


def test_distilabel_seed_is_ported_by_its_imports_endpoint_and_dataset_only() -> None:
    seed = (SEEDS / "distilabel_offline_batch_generation.py.txt").read_text(encoding="utf-8")
    ported = (PORTED / "distilabel_offline_batch_generation.py").read_text(encoding="utf-8")
    changed = [line for line in changed_lines(seed, ported) if not is_import(line)]
    assert changed == [
        f'base_url="{PORTED_ENDPOINT}",',
        '"repo_id": "distilabel-internal-testing/instruction-dataset",',
        '"repo_id": "./data/instruction-dataset",',
    ]
