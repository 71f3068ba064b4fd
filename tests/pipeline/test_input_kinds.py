"""A pipeline runs from every input kind against the simulator, survives a SIGKILL mid-step
without asking for an answered response again, resumes an unchanged input and recomputes a
changed one.

Each kill runs the pipeline in a fresh interpreter that rebuilds its input the way a user's
script would (a path, an ``hf:`` spec, or a Dataset / DataFrame / list built from files), with
``HF_DATASETS_OFFLINE=1`` and a private ``HF_HOME``.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FAST_RETRY, read_jsonl
from helpers.input_kinds import KINDS, make_input, write_input
from helpers.subprocess_runs import run_pipeline_script

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator

pytest.importorskip("datasets")

ROWS = 60
#: Rows of the kill test: enough that the second group commit never holds all of them.
KILL_ROWS = 240
HELPERS = Path(__file__).resolve().parents[1]

SCRIPT = """
import os, sys
sys.path.insert(0, {helpers!r})
from helpers.input_kinds import open_input
from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptedGenerator
from datamill.serving.retry import RetryPolicy

class FromInput(BatchedPipelineABC):
    def __init__(self):
        super().__init__()
        self.storage = BatchedFileStorage(open_input(os.environ["KIND"], os.environ["IN"]),
                                          cache_path=os.environ["CACHE"], file_name_prefix="src")
        self.llm = APILLMServing_request(api_url=os.environ["URL"], model_name="gpt-4o-mini", max_workers=4,
                                         retry=RetryPolicy(base_delay=0.01))
        self.translate = PromptedGenerator(self.llm, user_prompt="Translate: ")
    def forward(self):
        self.translate.run(self.storage.step(), input_key="text", output_key="fr")

p = FromInput(); p.compile(); p.forward(batch_size=int(os.environ["BATCH"]), resume_from_last=True)
"""


class FromInput(BatchedPipelineABC):
    """One LLM step over any input kind."""

    def __init__(self, source: Any, cache: Path, url: str, *, cache_type: str = "jsonl") -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            source, cache_path=str(cache), file_name_prefix="src", cache_type=cache_type
        )
        self.llm = APILLMServing_request(
            api_url=url, model_name="gpt-4o-mini", max_workers=4, retry=FAST_RETRY
        )
        self.translate = PromptedGenerator(self.llm, user_prompt="Translate: ")

    def forward(self) -> None:
        self.translate.run(self.storage.step(), input_key="text", output_key="fr")


def source_rows(count: int = ROWS, *, first_text: str | None = None) -> list[dict[str, Any]]:
    rows = [{"id": i, "text": f"sentence number {i}"} for i in range(count)]
    if first_text is not None:
        rows[0]["text"] = first_text
    return rows


@pytest.fixture(autouse=True)
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-home" / "datasets")


def stored_keys(cache: Path) -> set[str]:
    """Request keys whose responses the client had stored (cache or response journal)."""
    db = cache / "src.state.db"
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM request_cache")}
    for journal in cache.glob("src.state.db.responses-*.log"):
        for line in journal.read_bytes().splitlines():
            key, _, response = line.partition(b" ")
            if response.endswith(b"}"):
                keys.add(key.decode())
    return keys


def assert_translated(rows: list[dict[str, Any]], count: int = ROWS) -> None:
    assert [int(row["id"]) for row in rows] == list(range(count))
    for row in rows:
        assert row["fr"].endswith(row["text"]), row


@pytest.mark.parametrize("kind", KINDS)
def test_killed_mid_step_then_resumed_from_each_input_kind_writes_every_row_once_and_pays_once(
    tmp_path: Path, make_simulator, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    sim = make_simulator(latency_mean=0.003)
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT.format(helpers=str(HELPERS)))
    monkeypatch.setenv("KIND", kind)
    written = Path(write_input(kind, tmp_path / "input", source_rows(KILL_ROWS)).removeprefix("hf:"))
    spec = f"hf:{written}" if kind == "hub_spec" else written
    cache = tmp_path / "cache"
    url = sim.openai_base + "/chat/completions"

    code = run_pipeline_script(script, spec, cache, url, batch=2, fault="after_commit:2")
    assert code == -signal.SIGKILL, "the fault never fired: the run ended before its second commit"
    committed = read_jsonl(cache / "src_step1.jsonl")
    assert 0 < len(committed) < KILL_ROWS
    stored = stored_keys(cache)
    answered_before = sim.stats(detail=True)["answered_by_client_key"]

    assert run_pipeline_script(script, spec, cache, url, batch=5) == 0
    answered_after = sim.stats(detail=True)["answered_by_client_key"]
    resent = {key for key, n in answered_after.items() if n > answered_before.get(key, 0)} & stored
    assert not resent, f"{len(resent)} responses stored before the kill were requested again"
    assert_translated(read_jsonl(cache / "src_step1.jsonl"), KILL_ROWS)
    assert sim.stats()["requests"] <= KILL_ROWS + 4  # at most the kill's requests in flight again


@pytest.mark.parametrize("kind", KINDS)
def test_an_unchanged_input_resumes_complete_and_a_changed_one_recomputes(
    tmp_path: Path, simulator, kind: str
) -> None:
    url = simulator.openai_base + "/chat/completions"
    cache = tmp_path / "cache"
    first = FromInput(make_input(kind, tmp_path / "a", source_rows()), cache, url)
    summary = first.forward(batch_size=8)
    assert summary.steps[0].rows_out == ROWS
    assert_translated(list(first.rows()))

    if kind == "hub_spec":  # the same dataset by the same name: the spec itself
        same_source = first.storage.first_entry_file_name
    else:
        same_source = make_input(kind, tmp_path / "b", source_rows())
    again = FromInput(same_source, cache, url).forward(batch_size=8)
    assert again.already_complete and simulator.stats()["requests"] == ROWS

    changed = write_input(kind, tmp_path / "c", source_rows(first_text="a changed first row"))
    if kind == "hub_spec":  # same name, new content: rewrite the folder the spec names
        folder = Path(str(same_source).removeprefix("hf:"))
        (folder / "train.jsonl").write_bytes((Path(changed.removeprefix("hf:")) / "train.jsonl").read_bytes())
        changed_source: Any = same_source
    else:
        from helpers.input_kinds import open_input

        changed_source = open_input(kind, changed)
    rerun = FromInput(changed_source, cache, url).forward(batch_size=8)
    assert not rerun.already_complete
    assert any("input_file" in reason for reason in rerun.steps[0].changes), rerun.steps[0].changes
    assert simulator.stats()["requests"] == ROWS + 1  # only the changed row is new


def test_compile_reads_only_the_first_rows_of_a_json_array(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    good = ",".join(json.dumps(row) for row in source_rows(100))
    path.write_text(f"[{good}, {{broken", encoding="utf-8")
    pipeline = FromInput(path, tmp_path / "cache", "http://127.0.0.1:9/v1/chat/completions")
    assert pipeline.compile() is pipeline


def test_compile_checks_keys_against_a_dataframe_and_a_dataset(tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    from datamill.errors import KeyValidationError

    url = "http://127.0.0.1:9/v1/chat/completions"
    for source in (pd.DataFrame({"id": [1], "body": ["x"]}), datasets.Dataset.from_dict({"body": ["x"]})):
        with pytest.raises(
            KeyValidationError, match=r"\['text'\] not found; available columns: \[.*'body'\]"
        ):
            FromInput(source, tmp_path / "cache", url).compile()
