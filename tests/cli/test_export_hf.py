"""``datamill export --format hf``: a step's committed rows as a folder that
``datasets.load_from_disk`` reads back, written whole or not at all."""

from __future__ import annotations

import json

import pytest
from conftest import ROWS, Project

datasets = pytest.importorskip("datasets")


@pytest.fixture
def finished(project: Project) -> Project:
    result = project.datamill("run", "pipeline.py", "--batch-size", "8", "--quiet")
    assert result.returncode == 0, result.stderr
    return project


def test_export_hf_writes_a_folder_that_load_from_disk_reads_back(finished: Project) -> None:
    out = finished.root / "exported"
    result = finished.datamill("export", "cache", "--format", "hf", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"exported {ROWS} row(s) of step 1" in result.stderr

    dataset = datasets.load_from_disk(str(out))
    step_file = finished.cache / "tr_step2.jsonl"
    assert dataset.to_list() == [
        json.loads(line) for line in step_file.read_text(encoding="utf-8").splitlines()
    ]
    assert dataset.column_names == ["id", "text", "fr", "summary"]
    assert not (finished.root / "exported.tmp").exists()


def test_export_hf_of_an_earlier_step_and_refusing_a_folder_in_use(finished: Project) -> None:
    out = finished.root / "step0"
    assert (
        finished.datamill("export", "cache", "--step", "0", "--format", "hf", "--out", str(out)).returncode
        == 0
    )
    assert "summary" not in datasets.load_from_disk(str(out)).column_names

    again = finished.datamill("export", "cache", "--format", "hf", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "summary" not in datasets.load_from_disk(str(out)).column_names
