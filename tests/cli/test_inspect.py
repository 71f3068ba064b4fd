"""``datamill status``, ``show``, ``export`` and ``estimate`` on a real cache directory."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import pytest
from conftest import ROWS, Project

from datamill.core.lock import CacheLock
from datamill.simulator.server import SimulatorHandle


@pytest.fixture
def finished(project: Project) -> Project:
    result = project.datamill("run", "pipeline.py", "--batch-size", "8", "--quiet")
    assert result.returncode == 0, result.stderr
    return project


def test_status_shows_each_step_with_rows_tokens_and_cost(finished: Project) -> None:
    result = finished.datamill("status", "cache")
    assert result.returncode == 0, result.stderr
    assert "prefix tr" in result.stdout and "complete" in result.stdout
    assert "0 PromptedGenerator" in result.stdout and "1 PromptedGenerator" in result.stdout
    assert f"{ROWS}/{ROWS}" in result.stdout
    assert "tr_step2.jsonl" in result.stdout

    data = json.loads(finished.datamill("status", "cache", "--json").stdout)
    assert [step["state"] for step in data["steps"]] == ["complete", "complete"]
    assert all(step["rows_done"] == step["rows_total"] == ROWS for step in data["steps"])
    assert all(step["prompt_tokens"] > 0 for step in data["steps"])
    assert data["run"]["status"] == "complete"
    assert data["cached_responses"] == 2 * ROWS


def test_status_reads_while_another_process_holds_the_lock(finished: Project) -> None:
    with CacheLock(finished.cache / "tr.lock"):
        result = finished.datamill("status", "cache")
    assert result.returncode == 0, result.stderr
    assert f"{ROWS}/{ROWS}" in result.stdout


def test_status_during_a_run_shows_it_running(project: Project, simulator: SimulatorHandle) -> None:
    simulator.configure(latency_mean=0.1)
    run = subprocess.Popen(
        [sys.executable, "-m", "datamill.cli", "run", "pipeline.py", "--batch-size", "4", "--quiet"],
        cwd=project.root,
        env=project.env,
    )
    try:
        seen = ""
        deadline = time.monotonic() + 30
        while run.poll() is None and time.monotonic() < deadline:
            result = project.datamill("status", "cache", "--json")
            if result.returncode == 0 and json.loads(result.stdout)["run"]["status"] == "running":
                seen = result.stdout
                break
            time.sleep(0.05)
        assert seen, "status never saw the run going"
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_status_without_a_cache_or_with_several_prefixes_is_a_usage_error(finished: Project) -> None:
    empty = finished.root / "empty"
    empty.mkdir()
    result = finished.datamill("status", str(empty))
    assert result.returncode == 2 and "no pipeline has run" in result.stderr
    (finished.cache / "other.state.db").write_bytes((finished.cache / "tr.state.db").read_bytes())
    several = finished.datamill("status", "cache")
    assert several.returncode == 2 and "--prefix" in several.stderr
    assert finished.datamill("status", "cache", "--prefix", "tr").returncode == 0


def test_show_prints_the_first_rows_as_json_lines(finished: Project) -> None:
    result = finished.datamill("show", "cache", "--step", "0", "-n", "3")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in rows] == [0, 1, 2]
    assert "fr" in rows[0] and "summary" not in rows[0]
    table = finished.datamill("show", "cache", "-n", "2", "--format", "table")
    assert "summary" in table.stdout and "sentence number 1" in table.stdout


def test_show_a_step_out_of_range_is_a_usage_error(finished: Project) -> None:
    result = finished.datamill("show", "cache", "--step", "5")
    assert result.returncode == 2
    assert "out of range" in result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_writes_every_row_of_the_last_step(finished: Project, fmt: str) -> None:
    out = finished.root / f"out.{fmt}"
    result = finished.datamill("export", "cache", "--format", fmt, "--out", str(out))
    assert result.returncode == 0, result.stderr
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    elif fmt == "csv":
        with out.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
    assert len(rows) == ROWS
    assert [int(row["id"]) for row in rows] == list(range(ROWS))
    assert all(row["summary"] for row in rows)
    assert not list(finished.root.glob("*.tmp"))


def test_export_of_an_earlier_step_and_a_format_from_the_extension(finished: Project) -> None:
    out = finished.root / "step0.jsonl"
    assert finished.datamill("export", "cache", "--step", "0", "--out", str(out)).returncode == 0
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert "fr" in first and "summary" not in first
    bad = finished.datamill("export", "cache", "--out", str(finished.root / "out.txt"))
    assert bad.returncode == 2 and "--format" in bad.stderr


def test_estimate_prints_tokens_and_cost_per_step_and_sends_nothing(
    project: Project, simulator: SimulatorHandle
) -> None:
    result = project.datamill("estimate", "pipeline.py", "--completion-tokens", "10", "20")
    assert result.returncode == 0, result.stderr
    assert "0 PromptedGenerator" in result.stdout and "1 PromptedGenerator ~" in result.stdout
    assert "gpt-4o-mini" in result.stdout and "$" in result.stdout
    data = json.loads(project.datamill("estimate", "pipeline.py", "--json").stdout)
    assert [step["rows"] for step in data["steps"]] == [ROWS, ROWS]
    assert data["prompt_tokens"] > 0 and 0 < data["cost_low_usd"] <= data["cost_high_usd"]
    assert simulator.stats()["requests"] == 0
    assert not project.cache.exists() or not list(project.cache.glob("*_step*"))
