"""Each example in ``examples/`` runs with one command against a simulator subprocess and
writes the output it promises; rerunning one resumes and sends nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datamill.simulator import SimulatorHandle, run_simulator_process

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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
