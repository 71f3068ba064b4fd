"""A pipeline with a filter and dedup steps, killed with SIGKILL at protocol points and at random
instants, then rerun to completion (with other batch sizes), ends with exactly the files and the
drop counts of an uninterrupted run: filtered rows leave the step file, resume stays correct.
"""

from __future__ import annotations

import random
import signal
import sqlite3
from pathlib import Path

import pytest
from helpers.subprocess_runs import run_pipeline_script
from operator_helpers import read_jsonl, write_jsonl

PIPELINE = """
import os
from datamill import (APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, ExactDeduplicator,
                      LLMScorer, MinHashDeduplicator, PromptTemplateGenerator, ScoreFilter)
from datamill.serving.retry import RetryPolicy

class Curate(BatchedPipelineABC):
    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(os.environ["IN"], cache_path=os.environ["CACHE"], file_name_prefix="cur")
        llm = APILLMServing_request(api_url=os.environ["URL"], model_name="gpt-4o-mini", max_workers=8,
                                    retry=RetryPolicy(base_delay=0.01))
        self.exact = ExactDeduplicator()
        self.write = PromptTemplateGenerator(llm, template="Write a short note about {topic}")
        self.judge = LLMScorer(llm, criteria="Is the note clear?", min_score=1, max_score=10)
        self.keep = ScoreFilter(min_score=4)
        self.near = MinHashDeduplicator(threshold=0.7)

    def forward(self):
        self.exact.run(self.storage.step(), input_key="topic")
        self.write.run(self.storage.step(), output_key="draft")
        self.judge.run(self.storage.step(), input_key="draft")
        self.keep.run(self.storage.step(), input_key="score")
        self.near.run(self.storage.step(), input_key="draft")

Curate().forward(batch_size=int(os.environ["BATCH"]))
"""

STEPS = 5


def _topics(count: int = 240, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(2000)]
    bases = [[rng.choice(vocabulary) for _ in range(60)] for _ in range(count // 3)]
    rows = []
    for i in range(count):
        words = list(bases[rng.randrange(len(bases))])
        if rng.random() < 0.4:
            words[rng.randrange(len(words))] = "changed"
        rows.append({"id": i, "topic": " ".join(words)})
    return rows


@pytest.fixture
def curate(tmp_path: Path, sim):  # type: ignore[no-untyped-def]
    sim.configure(latency_mean=0.002, latency_jitter=0.002)
    script = tmp_path / "curate.py"
    script.write_text(PIPELINE)
    source = write_jsonl(tmp_path / "topics.jsonl", _topics())
    return script, source, sim.openai_base


def _outputs(cache: Path) -> tuple[list[list[dict]], dict]:
    files = [read_jsonl(cache / f"cur_step{k}.jsonl") for k in range(1, STEPS + 1)]
    with sqlite3.connect(cache / "cur.state.db") as conn:
        drops = {(s, r): n for s, r, n in conn.execute("SELECT step, reason, rows FROM drops")}
        failures = conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    assert failures == 0
    return files, drops


@pytest.mark.slow
def test_filter_and_dedup_pipeline_resumes_after_sigkill_to_the_uninterrupted_output(
    curate, tmp_path: Path
) -> None:
    script, source, url = curate
    assert run_pipeline_script(script, source, tmp_path / "clean", url, batch=5) == 0
    expected_files, expected_drops = _outputs(tmp_path / "clean")
    assert {step for step, _ in expected_drops} == {0, 3, 4}, expected_drops
    assert 0 < len(expected_files[-1]) < len(expected_files[1])

    rng = random.Random(11)
    cache = tmp_path / "killed"
    kills = [
        {"fault": "after_append:3"},
        {"fault": "mid_append:4"},
        {"fault": "in_commit:6"},
        {"fault": "after_commit:9"},
        {"kill_after": rng.uniform(0.3, 0.6)},
        {"kill_after": rng.uniform(0.6, 1.0)},
    ]
    for kill in kills:
        batch = rng.choice([1, 2, 3, 7, 16])
        code = run_pipeline_script(script, source, cache, url, batch, **kill)
        if "fault" in kill:
            assert code == -signal.SIGKILL, f"fault {kill['fault']} never fired"
    assert run_pipeline_script(script, source, cache, url, batch=4) == 0
    files, drops = _outputs(cache)
    for step, (got, want) in enumerate(zip(files, expected_files, strict=True)):
        assert got == want, f"step {step + 1} differs from the uninterrupted run"
    assert drops == expected_drops
