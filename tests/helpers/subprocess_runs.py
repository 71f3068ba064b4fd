"""Run a pipeline script in a fresh interpreter, optionally killed, as the crash tests do.

The script reads its settings from the environment: ``IN`` (the source file), ``CACHE`` (the
cache folder), ``URL`` (the simulator endpoint) and ``BATCH`` (the batch size). The simulator
lives in the test process, so it outlives every kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def run_pipeline_script(
    script: Path,
    source: Path,
    cache: Path,
    url: str,
    batch: int,
    fault: str | None = None,
    kill_after: float | None = None,
    *,
    timeout: float = 240.0,
    kill_when: Callable[[], bool] | None = None,
) -> int:
    """Run ``script`` to its end and return its exit code: 0, or ``-SIGKILL`` when killed.

    ``fault`` is set as ``DATAMILL_FAULT`` (the engine kills itself at that protocol point; an
    inherited value is never passed on); ``kill_after`` sends SIGKILL after that many seconds
    if the run is still going; ``kill_when`` sends it as soon as that check (polled every few
    milliseconds) returns True, e.g. once a step file holds some rows. Any other exit code fails the test with the script's stderr.
    """
    env = {**os.environ, "IN": str(source), "CACHE": str(cache), "URL": url, "BATCH": str(batch)}
    env.pop("DATAMILL_FAULT", None)
    if fault:
        env["DATAMILL_FAULT"] = fault
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    if kill_when is not None:
        while proc.poll() is None and not kill_when():
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=timeout)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"pipeline exited {proc.returncode}:\n{stderr}")
    return proc.returncode
