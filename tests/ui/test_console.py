"""What a person sees running a plain script that calls ``forward()``, on a real terminal (pty).

The script (``forward_script.py``) starts its own simulator; pexpect reads what the terminal
shows, at 80 columns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

from datamill import APILLMServing_request

SCRIPT = Path(__file__).with_name("forward_script.py")
ROOT = Path(__file__).resolve().parents[2]


def run_script(directory: Path, mode: str) -> tuple[str, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(
        sys.executable,
        [str(SCRIPT), str(directory), mode],
        env=env,
        dimensions=(24, 80),
        encoding="utf-8",
        timeout=120,
    )
    child.expect(pexpect.EOF)
    child.close()
    return child.before, int(child.exitstatus if child.exitstatus is not None else -1)


def test_a_script_shows_progress_the_resume_point_recompute_reasons_and_a_summary(
    tmp_path: Path,
) -> None:
    output, status = run_script(tmp_path, "stop")
    assert status != 0
    assert "stopped by the script at row 300" in output
    assert "no running event loop" not in output and "During handling" not in output
    output, status = run_script(tmp_path, "run")
    assert status == 0, output
    assert "resuming at row 300 of 600" in output
    assert "rows/s" in output and "in flight" in output and "0 StoppingGenerator" in output
    assert "run complete" in output
    output, status = run_script(tmp_path, "changed")
    assert status == 0, output
    assert "will be recomputed: configuration changed: " in output and "system_prompt" in output


def test_a_script_with_pending_offline_jobs_ends_with_one_message_and_status_75(tmp_path: Path) -> None:
    output, status = run_script(tmp_path, "offline")
    assert status == 75, output
    assert "offline batch jobs are still running" in output
    assert "rerun the same command" in output
    assert "Traceback" not in output


def test_forward_prints_lines_and_a_summary_off_a_terminal_and_nothing_when_quieted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from datamill.simulator import run_simulator
    from tests.ui.forward_script import Pipeline

    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id": {i}, "text": "row {i}"}}\n' for i in range(40)))
    with run_simulator() as sim:

        def pipeline(name: str) -> Pipeline:
            directory = tmp_path / name
            directory.mkdir()
            (directory / "in.jsonl").write_text(source.read_text())
            return Pipeline(directory, APILLMServing_request(sim.openai_base, max_workers=4), "Be brief.")

        pipeline("shown").forward(batch_size=10)
        shown = capsys.readouterr().err
        assert "step 0 (StoppingGenerator): starting, 40 rows" in shown and "run complete" in shown
        pipeline("off").forward(batch_size=10, progress=False)
        logger = logging.getLogger("datamill")
        logger.setLevel(logging.WARNING)
        try:
            pipeline("quiet").forward(batch_size=10)
        finally:
            logger.setLevel(logging.NOTSET)
        assert capsys.readouterr().err == ""
