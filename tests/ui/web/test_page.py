"""The page of ``datamill ui`` in real headless Chromium, against real runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_helpers import LONG_ROW, Project, snapshot

from datamill.core.rowfiles import iter_rows
from datamill.simulator import SimulatorHandle

STEP_FIELDS = (
    "rows_done",
    "rows_total",
    "rows_out",
    "rows_failed",
    "rows_dropped",
    "cost_usd",
    "rows_per_second",
)


def wait_for(driver: Any, condition: Callable[[Any], Any], seconds: float = 20.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)


def step_cells(driver: Any) -> list[dict[str, str]]:
    """Each step row's ``data-field`` -> ``data-value``, read in one script call."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#steps tbody tr')].map(tr => Object.fromEntries("
        "[...tr.querySelectorAll('[data-field]')].map(c => [c.dataset.field, c.dataset.value])))"
    )


def text_of(driver: Any, element_id: str, attribute: str = "textContent") -> str:
    """One element's text or data attribute, read in one script call (the page re-renders
    while it polls, so a looked-up element may be gone a moment later)."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? String(e[arguments[1]] ?? "
        "e.getAttribute(arguments[1])) : ''",
        element_id,
        attribute,
    )


def as_number(text: str) -> float | None:
    return None if text == "" else float(text)


def open_page(browser: Any, base: str, steps: int) -> None:
    browser.get(f"{base}/?poll=250")
    wait_for(browser, lambda d: len(step_cells(d)) == steps)


def test_the_page_shows_the_figures_of_status_json(
    browser: Any, finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    open_page(browser, serve_ui(finished.root), 3)
    status = finished.status_json()
    shown = step_cells(browser)
    for cells, step in zip(shown, status["steps"], strict=True):
        for field in STEP_FIELDS:
            assert as_number(cells[field]) == pytest.approx(step[field]), (step["index"], field)
        assert int(cells["tokens"]) == step["prompt_tokens"] + step["completion_tokens"]
        assert cells["state"] == step["state"] and step["state"] in ("complete", "failed rows")
    spend = text_of(browser, "spend-total", "data-value")
    assert float(spend) == pytest.approx(sum(step["cost_usd"] for step in status["steps"]))
    assert text_of(browser, "run-status") == status["run"]["status"] == "failed_rows"
    assert int(text_of(browser, "cached", "data-value")) == status["cached_responses"]
    reasons = text_of(browser, "reasons")
    assert "HTTP 500" in reasons and "does not match /[02468]$/" in reasons
    assert text_of(browser, "plot", "naturalWidth") != "0"


def test_progress_moves_while_a_pipeline_runs_in_another_process(
    browser: Any, project: Project, simulator: SimulatorHandle, serve_ui: Callable[[Path], str]
) -> None:
    simulator.configure(latency_mean=0.4)
    run = project.start_run(batch_size=4)
    try:
        deadline = time.monotonic() + 30
        while not (project.cache / "tr.state.db").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        open_page(browser, serve_ui(project.root), 3)
        seen: list[int] = []
        while run.poll() is None and len(set(seen)) < 3:
            cells = step_cells(browser)[0]
            if text_of(browser, "run-status") == "running" and cells["rows_done"]:
                seen.append(int(cells["rows_done"]))
            time.sleep(0.1)
        assert len(set(seen)) >= 3, f"the page showed step 0 at {sorted(set(seen))} while the run went on"
        assert seen == sorted(seen)
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        wait_for(browser, lambda d: text_of(d, "run-status") == "complete")
        wait_for(browser, lambda d: [c["rows_done"] for c in step_cells(d)] == [
            str(step["rows_done"]) for step in project.status_json()["steps"]
        ])  # fmt: skip
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_row_search_finds_a_known_row_and_long_texts_expand(
    browser: Any, finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    committed = list(iter_rows(finished.cache / "tr_step3.jsonl"))
    known = committed[len(committed) // 2]
    open_page(browser, serve_ui(finished.root), 3)
    wait_for(browser, lambda d: d.find_elements("css selector", "#rows tbody tr"))
    browser.find_element("id", "search").send_keys(known["text"].upper())
    browser.find_element("css selector", "#row-form button[type=submit]").click()
    wait_for(browser, lambda d: "match" in text_of(d, "row-range"))
    found = browser.find_elements("css selector", "#rows tbody tr")
    assert len(found) == 1
    assert found[0].get_attribute("data-row") == str(committed.index(known))
    assert known["fr"] in found[0].text and known["summary"] in found[0].text
    headers = [th.text for th in browser.find_elements("css selector", "#rows thead th")]
    assert headers[:3] == ["#", "in: fr", "out: summary"]

    browser.find_element("id", "clear").click()
    Select = pytest.importorskip("selenium.webdriver.support.select").Select
    Select(browser.find_element("id", "row-step")).select_by_value("0")
    long_row = wait_for(
        browser, lambda d: d.find_elements("css selector", f"#rows tr[data-row='{LONG_ROW}']")
    )[0]
    cell = long_row.find_element("css selector", "td.in")
    assert len(cell.text) < 300
    cell.find_element("css selector", "button.more").click()
    assert len(cell.text) > 400


def test_browsing_the_page_writes_nothing_to_the_cache(
    browser: Any, finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    before = snapshot(finished.cache)
    open_page(browser, serve_ui(finished.root), 3)
    from selenium.webdriver.support.select import Select

    for step in ("0", "1", "2"):
        Select(browser.find_element("id", "row-step")).select_by_value(step)
        wait_for(browser, lambda d: "committed" in text_of(d, "row-range"))
        wait_for(browser, lambda d, step=step: text_of(d, "failed-count").startswith(f"step {step}"))
    browser.find_element("id", "next").click()
    browser.find_element("id", "search").send_keys("sentence")
    browser.find_element("css selector", "#row-form button[type=submit]").click()
    wait_for(browser, lambda d: "match" in text_of(d, "row-range"))
    time.sleep(1.0)  # a few polls of the status and the plot
    after = snapshot(finished.cache)
    created = {name: entry for name, entry in after.items() if name not in before}
    assert all(name.endswith(".state.db-wal") and entry[0] == 0 for name, entry in created.items()), created
    assert {name: after[name] for name in before} == before
