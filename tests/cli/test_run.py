"""``datamill run``: exit codes, progress on a terminal and in a pipe, the log file, errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pexpect
import pytest
from conftest import ROWS, Project

from datamill.simulator.server import SimulatorHandle


def test_a_run_exits_0_prints_the_summary_and_writes_both_steps(project: Project) -> None:
    result = project.datamill("run", "pipeline.py", "--batch-size", "8")
    assert result.returncode == 0, result.stderr
    assert "run complete" in result.stdout
    assert "0 PromptedGenerator" in result.stdout and "1 PromptedGenerator" in result.stdout
    lines = (project.cache / "tr_step2.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == ROWS and "summary" in json.loads(lines[0])
    assert "Traceback" not in result.stderr


def test_a_rerun_of_a_finished_pipeline_sends_nothing(project: Project, simulator: SimulatorHandle) -> None:
    assert project.datamill("run", "pipeline.py").returncode == 0
    sent = simulator.stats()["requests"]
    again = project.datamill("run", "pipeline.py")
    assert again.returncode == 0
    assert "already complete" in again.stdout
    assert simulator.stats()["requests"] == sent


def test_fresh_with_yes_starts_over_from_the_request_cache(
    project: Project, simulator: SimulatorHandle
) -> None:
    assert project.datamill("run", "pipeline.py").returncode == 0
    sent = simulator.stats()["requests"]
    fresh = project.datamill("run", "pipeline.py", "--fresh", "--yes")
    assert fresh.returncode == 0, fresh.stderr
    assert "starting over" in fresh.stderr
    assert simulator.stats()["requests"] == sent  # nothing is paid twice


def test_resume_step_reruns_from_that_step_without_new_requests(
    project: Project, simulator: SimulatorHandle
) -> None:
    assert project.datamill("run", "pipeline.py").returncode == 0
    sent = simulator.stats()["requests"]
    result = project.datamill("run", "pipeline.py", "--resume-step", "1")
    assert result.returncode == 0, result.stderr
    assert "step 1 (PromptedGenerator) will be recomputed" in result.stderr
    assert "step 0 (PromptedGenerator) will be recomputed" not in result.stderr
    assert simulator.stats()["requests"] == sent


def test_fresh_on_a_terminal_asks_first_and_no_keeps_everything(project: Project) -> None:
    assert project.datamill("run", "pipeline.py").returncode == 0
    before = (project.cache / "tr_step2.jsonl").read_bytes()
    child = pexpect.spawn(
        sys.executable,
        ["-m", "datamill.cli", "run", "pipeline.py", "--fresh"],
        cwd=str(project.root),
        env=project.env,
        encoding="utf-8",
        timeout=60,
    )
    child.expect(r"Continue\? \[y/N\]")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert (project.cache / "tr_step2.jsonl").read_bytes() == before


def test_ctrl_c_stops_with_exit_130_and_one_line(project: Project, simulator: SimulatorHandle) -> None:
    simulator.configure(latency_mean=0.2)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "datamill.cli", "run", "pipeline.py", "--batch-size", "4"],
        cwd=str(project.root),
        env={**project.env, "DATAMILL_PROGRESS_INTERVAL": "0"},
        encoding="utf-8",
        dimensions=(40, 160),
        timeout=60,
    )
    child.expect(r"[1-9]\d*/60")  # some rows committed
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "interrupted: committed work is kept" in child.before
    assert "Traceback" not in child.before


def test_fresh_without_yes_off_a_terminal_is_a_usage_error(project: Project) -> None:
    result = project.datamill("run", "pipeline.py", "--fresh")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert not project.cache.exists()


def test_failed_rows_exit_1_with_the_summary_and_the_first_errors(
    project: Project, simulator: SimulatorHandle
) -> None:
    simulator.configure(failure_rate=1.0)
    result = project.datamill("run", "pipeline.py")
    assert result.returncode == 1
    assert f"{ROWS} row(s) failed" in result.stderr
    assert "HTTP 500" in result.stderr
    assert "run finished with failed rows" in result.stdout  # the summary table is still printed
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "Missing argument"),
        (["run", "missing.py"], "missing.py is not a file"),
        (["run", "pipeline.py:Nope"], "no pipeline class 'Nope'"),
        (["run", "pipeline.py", "--batch-size", "0"], "--batch-size"),
        (["run", "pipeline.py", "--no-such-option"], "No such option"),
        (["run", "pipeline.py", "--fresh", "--resume-step", "1"], "--resume-step"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(project: Project, args: list[str], message: str) -> None:
    result = project.datamill(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_a_file_with_two_pipelines_lists_them_and_a_named_one_runs(project: Project) -> None:
    source = project.pipeline.read_text(encoding="utf-8")
    project.pipeline.write_text(source + "\n\nclass Other(Translate):\n    pass\n", encoding="utf-8")
    result = project.datamill("run", "pipeline.py")
    assert result.returncode == 2
    assert "Other, Translate" in result.stderr
    assert project.datamill("run", "pipeline.py:Translate").returncode == 0


def test_an_error_is_one_message_without_traceback_and_debug_shows_it(project: Project) -> None:
    result = project.datamill("run", "pipeline.py", TEST_INPUT="absent.jsonl")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "absent.jsonl" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    debug = project.datamill("run", "pipeline.py", "--debug", TEST_INPUT="absent.jsonl")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "InputFileError" in debug.stderr


def test_an_exception_in_the_pipeline_file_names_its_line(project: Project) -> None:
    project.pipeline.write_text("import os\n\nraise RuntimeError('broken on purpose')\n", encoding="utf-8")
    result = project.datamill("run", "pipeline.py")
    assert result.returncode == 2
    assert "pipeline.py:3" in result.stderr and "broken on purpose" in result.stderr
    assert "Traceback" not in result.stderr


def test_piped_output_logs_a_progress_line_every_interval(
    project: Project, simulator: SimulatorHandle
) -> None:
    simulator.configure(latency_mean=0.05)
    result = project.datamill("run", "pipeline.py", "--batch-size", "4", DATAMILL_PROGRESS_INTERVAL="0.2")
    assert result.returncode == 0, result.stderr
    progress = re.findall(r"step (\d) \(PromptedGenerator\): (\d+)/60 rows .* rows/s, ETA", result.stderr)
    assert len(progress) >= 3  # two steps of 60 rows at 4 in flight x 50 ms: about 1.5 s
    for step in ("0", "1"):
        done = [int(rows) for index, rows in progress if index == step]
        assert done == sorted(done)
    assert "\x1b[" not in result.stderr  # no terminal control codes in a pipe


def test_quiet_prints_nothing_on_success_but_still_logs_to_the_file(project: Project) -> None:
    result = project.datamill("run", "pipeline.py", "--quiet", DATAMILL_PROGRESS_INTERVAL="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert "run complete" in (project.cache / "tr.log").read_text(encoding="utf-8")


def test_the_run_is_logged_to_a_file_in_the_cache_directory(project: Project) -> None:
    assert project.datamill("run", "pipeline.py", DATAMILL_PROGRESS_INTERVAL="0").returncode == 0
    log = (project.cache / "tr.log").read_text(encoding="utf-8")
    assert "step 0 (PromptedGenerator): starting, 60 rows" in log
    assert "rows/s, ETA" in log
    assert "step 1 (PromptedGenerator): done" in log
    assert "run complete" in log


def test_a_terminal_gets_the_live_display(project: Project, simulator: SimulatorHandle) -> None:
    simulator.configure(latency_mean=0.05)
    env = {k: v for k, v in project.env.items() if k != "NO_COLOR"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "datamill.cli", "run", "pipeline.py", "--batch-size", "4"],
        cwd=str(project.root),
        env=env,
        encoding="utf-8",
        dimensions=(40, 160),
        timeout=60,
    )
    child.expect("rows/s")
    child.expect("0 PromptedGenerator")
    child.expect(r"\d+/60")
    child.expect("━")  # the progress bar
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "run complete" in child.before
    assert "Traceback" not in child.before


def test_pending_offline_jobs_exit_75_with_a_jobs_table_then_block_until_done_collects(
    project: Project, simulator: SimulatorHandle
) -> None:
    simulator.configure(batch_processing_seconds=0.5)
    first = project.datamill("run", "pipeline.py", TEST_OFFLINE="1")
    assert first.returncode == 75, first.stderr
    assert "offline batch jobs" in first.stderr and "batch_" in first.stderr  # the table of jobs
    assert "not finished" in first.stderr
    assert "Traceback" not in first.stderr

    status = project.datamill("status", "cache")
    assert status.returncode == 0
    assert "pending offline batch jobs" in status.stdout

    second = project.datamill("run", "pipeline.py", "--block-until-done", "0.1", TEST_OFFLINE="1")
    assert second.returncode == 0, second.stderr
    assert "run complete" in second.stdout
    assert len((project.cache / "tr_step2.jsonl").read_text(encoding="utf-8").splitlines()) == ROWS


def test_block_until_done_is_set_on_every_serving_of_the_pipeline(tmp_path: Path) -> None:
    from datamill.cli.run import BLOCK_ATTRIBUTE, _set_block_until_done

    class Serving:
        offline_batch_generation_block_until_done = None
        use_offline_batch_generation = True

    class Op:
        def __init__(self, serving: Serving) -> None:
            self.llm_serving = serving

    class Pipeline:
        def __init__(self) -> None:
            self.direct = Serving()
            self.op = Op(Serving())
            self.shared = Op(self.direct)

    pipeline = Pipeline()
    _set_block_until_done(pipeline, 2.5)
    assert getattr(pipeline.direct, BLOCK_ATTRIBUTE) == 2.5
    assert getattr(pipeline.op.llm_serving, BLOCK_ATTRIBUTE) == 2.5


def test_python_dash_m_datamill_cli_and_the_console_script_agree(project: Project) -> None:
    result = project.datamill("--help")
    assert result.returncode == 0
    for command in ("run", "status", "show", "export", "estimate"):
        assert command in result.stdout
