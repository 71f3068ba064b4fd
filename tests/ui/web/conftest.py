"""Fixtures for the web page: a project run against the simulator, ``datamill ui`` served in a
subprocess, and headless Chromium through Selenium (skipped where it is missing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import CHROMEDRIVER, CHROMIUM, PIPELINE_SOURCE, Project, get_json, input_rows

from datamill.simulator import SimulatorHandle


@pytest.fixture
def project(tmp_path: Path, simulator: SimulatorHandle) -> Project:
    (tmp_path / "pipeline.py").write_text(PIPELINE_SOURCE, encoding="utf-8")
    rows = input_rows()
    (tmp_path / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAMILL_")}
    env.update(TEST_API_URL=simulator.openai_base, COLUMNS="200", NO_COLOR="1")
    return Project(tmp_path, env)


@pytest.fixture
def finished(project: Project, simulator: SimulatorHandle) -> Project:
    """The project after one complete run in which about a tenth of the calls failed."""
    simulator.configure(failure_rate=0.1)
    result = project.datamill("run", "pipeline.py", "--batch-size", "8", "--quiet")
    assert result.returncode == 0, result.stderr
    simulator.configure(failure_rate=0.0)
    return project


@pytest.fixture
def serve_ui() -> Iterator[Callable[[Path], str]]:
    """``serve_ui(root)`` runs ``datamill ui root`` in a subprocess and returns its base URL."""
    processes: list[subprocess.Popen[str]] = []

    def serve(root: Path) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "datamill.cli", "ui", str(root), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert match, f"datamill ui printed {line!r}{proc.stdout.read() if proc.poll() is not None else ''}"
        base = match.group(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                get_json(f"{base}/api/pipelines", timeout=1)
                return base
            except OSError:
                time.sleep(0.1)
        raise AssertionError("datamill ui did not answer within 30 s")

    yield serve
    for proc in processes:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Selenium; skipped where either is missing."""
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip(
            "the browser tests need Chromium and its driver: apt-get install chromium chromium-driver "
            "(or set DATAMILL_TEST_CHROMIUM and DATAMILL_TEST_CHROMEDRIVER)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1400",
    ):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"{CHROMIUM} with {CHROMEDRIVER} does not start: {exc.msg}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
