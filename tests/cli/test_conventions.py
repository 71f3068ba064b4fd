"""Conventions every command keeps: --version, --json where a table is printed, flags named in
messages, tables legible at 80 columns, and refusals instead of silent surprises."""

from __future__ import annotations

import json

from datamill import __version__
from datamill.simulator.server import SimulatorHandle
from tests.cli.conftest import ROWS, Project


def test_version_prints_the_version() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "datamill.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"datamill {__version__}"


def test_status_and_run_fit_80_columns_and_status_json_says_what_happened(project: Project) -> None:
    run = project.datamill("run", "pipeline.py", COLUMNS="80")
    assert run.returncode == 0, run.stderr
    assert "run complete" in run.stdout
    assert all(len(line) <= 80 for line in run.stdout.splitlines()), run.stdout
    assert "0 PromptedGenerator" in run.stdout  # the step name is not cut
    status = project.datamill("status", "cache", COLUMNS="80")
    assert status.returncode == 0, status.stderr
    assert all(len(line) <= 80 for line in status.stdout.splitlines()), status.stdout
    assert "complete" in status.stdout and f"{ROWS}/{ROWS}" in status.stdout
    data = json.loads(project.datamill("status", "cache", "--json").stdout)
    assert [step["state"] for step in data["steps"]] == ["complete", "complete"]
    assert data["steps"][0]["drop_reasons"] == {}
    assert data["run"]["status"] == "complete"


def test_run_json_prints_the_summary_as_one_object(project: Project) -> None:
    result = project.datamill("run", "pipeline.py", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "complete" and summary["steps"][0]["rows_out"] == ROWS


def test_pending_jobs_are_listed_as_json_and_the_message_names_the_flag(project: Project) -> None:
    result = project.datamill("run", "pipeline.py", TEST_OFFLINE="1")
    assert result.returncode == 75, result.stderr
    assert "--block-until-done SECONDS" in result.stderr
    assert "offline_batch_generation_block_until_done" not in result.stderr
    jobs = json.loads(project.datamill("jobs", "cache", "--json", "--no-refresh").stdout)
    assert len(jobs) >= 1 and jobs[0]["job"].startswith("batch_") and jobs[0]["step"] == 0
    table = project.datamill("jobs", "cache", "--no-refresh", COLUMNS="80").stdout
    assert jobs[0]["job"] in table  # the id is never broken across lines
    assert all(len(line) <= 80 for line in table.splitlines()), table
    status = json.loads(project.datamill("status", "cache", "--json").stdout)
    assert status["steps"][0]["state"] == "waiting for batch jobs"
    assert status["run"]["status"] == "offline_pending"


def test_run_overrides_the_endpoint_and_model_and_caps_the_spend(
    project: Project, simulator: SimulatorHandle
) -> None:
    result = project.datamill(
        "run",
        "pipeline.py",
        "--api-url",
        simulator.openai_base,
        "--model",
        "gpt-4o",
        "--max-cost",
        "100",
        "--json",
        TEST_API_URL="http://127.0.0.1:9/v1",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {step["model"] for step in summary["steps"]} == {"gpt-4o"}
    assert simulator.stats()["requests"] >= ROWS


def test_export_refuses_a_json_name_it_would_fill_with_json_lines(project: Project) -> None:
    assert project.datamill("run", "pipeline.py", "-q").returncode == 0
    refused = project.datamill("export", "cache", "-o", "out.json")
    assert refused.returncode == 2
    assert "--format jsonl" in refused.stderr and not (project.root / "out.json").exists()
    honoured = project.datamill("export", "cache", "-o", "out.json", "--format", "jsonl")
    assert honoured.returncode == 0
    assert len((project.root / "out.json").read_text().splitlines()) == ROWS


def test_simulate_speaks_the_same_help_style_with_its_knobs(project: Project) -> None:
    result = project.datamill("simulate", "--help")
    assert result.returncode == 0
    assert "Knobs" in result.stdout and "--rpm-limit" in result.stdout and "Usage:" in result.stdout
    bad = project.datamill("simulate", "--rpm-limit", "abc")
    assert bad.returncode == 2 and "--rpm-limit" in bad.stderr
