"""A pipeline's output through Arrow: ``to_arrow``, ``to_pandas`` and ``to_hf_dataset`` hold the
committed rows of each cache type, ignore what was appended without a commit, and
``push_to_hub`` hands the dataset to ``datasets`` (run here with the hub offline, so it stops
at the network and says so)."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import QAPipeline, questions, write_jsonl

from datamill.errors import DatamillError, InputFileError

datasets = pytest.importorskip("datasets")

ROWS = 23


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "questions.jsonl", questions(ROWS))


@pytest.mark.parametrize("cache_type", ["jsonl", "csv", "parquet"])
def test_to_arrow_pandas_and_hf_dataset_hold_the_committed_rows_of_each_cache_type(
    simulator, input_file: Path, tmp_path: Path, cache_type: str
) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base, cache_type=cache_type)
    p.forward(batch_size=5)
    expected = list(p.rows())

    table = p.to_arrow()
    assert table.column_names == ["id", "question", "answer", "verdict"]
    assert table.to_pylist() == expected
    dataset = p.to_hf_dataset()
    assert isinstance(dataset, datasets.Dataset)
    assert dataset.num_rows == ROWS and dataset.to_list() == expected
    frame = p.to_pandas(step=0)
    assert list(frame.columns) == ["id", "question", "answer"] and len(frame) == ROWS
    assert frame["answer"].tolist() == [row["answer"] for row in p.rows(step=0)]


def test_rows_appended_without_a_commit_are_not_in_the_table(
    simulator, input_file: Path, tmp_path: Path
) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    p.forward(batch_size=5)
    with p.step_paths()[-1].open("a", encoding="utf-8") as handle:
        handle.write('{"id": 999, "question": "never committed", "answer": "a", "verdict": "v"}\n{"id": 10')
    assert p.to_arrow().num_rows == ROWS
    assert 999 not in p.to_hf_dataset()["id"]


def test_to_arrow_before_any_run_says_to_call_forward(input_file: Path, tmp_path: Path) -> None:
    p = QAPipeline(input_file, tmp_path / "cache", "http://127.0.0.1:9/v1/chat/completions")
    with pytest.raises(InputFileError, match=r"call forward\(\) first"):
        p.to_arrow()


def test_push_to_hub_hands_the_rows_to_datasets_and_wraps_its_failure(
    simulator, input_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    p = QAPipeline(input_file, tmp_path / "cache", simulator.openai_base)
    p.forward(batch_size=5)
    with pytest.raises(
        DatamillError, match=r"push_to_hub\('someone/qa'\) failed \(OfflineModeIsEnabled"
    ) as caught:
        p.push_to_hub("someone/qa", token="hf_not_a_real_token", private=True)
    assert "huggingface.co" in str(caught.value)
