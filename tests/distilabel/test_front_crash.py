"""A distilabel-style pipeline killed with SIGKILL mid-run resumes like any datamill pipeline.

The pipeline runs in a child process (``DATAMILL_FAULT`` kills it at an engine protocol point);
the simulator lives in the test process and counts every request it answers twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROWS = 40

SCRIPT = """
import os
from datamill.distilabel.models import OpenAILLM
from datamill.distilabel.pipeline import Pipeline
from datamill.distilabel.steps import LoadDataFromDicts
from datamill.distilabel.steps.tasks import TextGeneration

with Pipeline(name="crash", cache_dir=os.environ["CACHE"]) as pipeline:
    load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(int(os.environ["ROWS"]))])
    first = TextGeneration(llm=OpenAILLM(model="gpt-4o-mini", base_url=os.environ["URL"]), input_batch_size=4)
    second = TextGeneration(
        llm=OpenAILLM(model="gpt-4o-mini", base_url=os.environ["URL"]),
        columns="generation",
        template="Improve: {{ generation }}",
        output_mappings={"generation": "improved"},
    )
    load >> first >> second

if __name__ == "__main__":
    pipeline.run()
"""


def run_script(script: Path, cache: Path, url: str, fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CACHE": str(cache), "URL": url, "ROWS": str(ROWS)}
    env.pop("DATAMILL_FAULT", None)
    if fault:
        env["DATAMILL_FAULT"] = fault
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fault", ["after_commit:1", "in_commit:2", "after_cache_put:2"])
def test_sigkill_mid_run_then_rerun_writes_every_row_once_and_resends_nothing_stored(
    make_simulator, tmp_path: Path, fault: str
) -> None:
    sim = make_simulator(latency_mean=0.005)
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT, encoding="utf-8")
    cache = tmp_path / "cache"
    killed = run_script(script, cache, sim.openai_base, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = run_script(script, cache, sim.openai_base, None)
    assert done.returncode == 0, done.stderr
    out = cache / "crash" / "text_generation_0_step2.jsonl"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["instruction"] for row in rows] == [f"question {i}" for i in range(ROWS)]
    assert all(row["improved"].endswith(f"Improve: {row['generation']}") for row in rows)
    stats = sim.stats()
    assert stats["distinct_requests"] == 2 * ROWS
    # Only requests in flight at the kill may be sent twice, never a stored one.
    assert stats["duplicates"] <= 16
