"""The JSON API of ``datamill ui``, served by the real command over loopback HTTP."""

from __future__ import annotations

import socket
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from web_helpers import ROWS, Project, get_json, pipeline_id, snapshot

from datamill.core.lock import CacheLock
from datamill.core.rowfiles import iter_rows
from datamill.core.spend import PaidResponse, insert_spend
from datamill.core.state import BatchCommit, StateDB, insert_commits
from datamill.simulator import SimulatorHandle


def test_status_api_is_status_json_and_overview_adds_reasons_and_columns(
    finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    base = serve_ui(finished.root)
    pid = pipeline_id(base)
    expected = finished.status_json()
    assert get_json(f"{base}/api/pipelines/{pid}/status") == expected

    overview = get_json(f"{base}/api/pipelines/{pid}/overview")
    assert overview["status"] == expected
    translate, keep_even, summarize = overview["details"]
    assert translate["input_columns"] == ["text"] and translate["output_columns"] == ["fr"]
    assert summarize["input_columns"] == ["fr"] and summarize["output_columns"] == ["summary"]
    failed = expected["steps"][0]["rows_failed"]
    assert failed > 0, "the simulator's failure rate left no failed row"
    assert translate["failed_by_reason"] == {"HTTP 500": failed}
    dropped = expected["steps"][1]["rows_dropped"]
    assert keep_even["dropped_by_reason"] == {"does not match /[02468]$/": dropped} and dropped > 0
    assert translate["run_cost_usd"] == pytest.approx(expected["steps"][0]["cost_usd"])

    plot = get_json(f"{base}/api/pipelines/{pid}/plot.json")
    for step in expected["steps"]:
        points = plot["steps"][str(step["index"])]["points"]
        assert points[-1][2] == pytest.approx(step["cost_usd"]), "spend ends at the step's total"
        assert all(0 <= seconds <= plot["seconds"] + 1e-9 and rate >= 0 for seconds, rate, _ in points)
    svg = urllib_get(f"{base}/api/pipelines/{pid}/plot.svg").decode()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 * len(expected["steps"])


def test_rows_are_paged_by_offset_in_file_order_and_stop_at_the_last_commit(
    finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    step_path = finished.cache / "tr_step3.jsonl"
    on_disk = list(iter_rows(step_path))
    with step_path.open("ab") as handle:  # a batch a running process appended but never committed
        handle.write(b'{"id": -1, "text": "not committed"}\n')
    base = serve_ui(finished.root)
    url = f"{base}/api/pipelines/{pipeline_id(base)}/steps/2/rows"

    seen = []
    offset = 0
    while True:
        page = get_json(f"{url}?offset={offset}&limit=7")
        assert page["total"] == len(on_disk)
        if not page["rows"]:
            break
        assert [row["row"] for row in page["rows"]] == list(range(offset, offset + len(page["rows"])))
        seen.extend(row["values"] for row in page["rows"])
        offset += len(page["rows"])
    assert seen == on_disk


@pytest.mark.parametrize("cache_type", ["csv", "parquet"])
def test_csv_and_parquet_steps_are_paged_and_searched_like_jsonl(
    project: Project, serve_ui: Callable[[Path], str], cache_type: str
) -> None:
    project.env["TEST_CACHE_TYPE"] = cache_type
    result = project.datamill("run", "pipeline.py", "--batch-size", "8", "--quiet")
    assert result.returncode == 0, result.stderr
    on_disk = list(iter_rows(project.cache / f"tr_step3.{cache_type}", cache_type))
    base = serve_ui(project.root)
    url = f"{base}/api/pipelines/{pipeline_id(base)}/steps/2/rows"
    pages = [get_json(f"{url}?offset={offset}&limit=9") for offset in range(0, len(on_disk), 9)]
    assert [row["values"] for page in pages for row in page["rows"]] == on_disk
    known = on_disk[len(on_disk) // 2]
    found = get_json(f"{url}?q={known['summary'].split('] ')[1].replace(' ', '%20')}")
    assert [row["values"] for row in found["rows"]] == [known]


def test_search_finds_a_known_row_and_says_where_to_continue(
    finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    base = serve_ui(finished.root)
    url = f"{base}/api/pipelines/{pipeline_id(base)}/steps/0/rows"
    rows = get_json(f"{url}?limit=500")["rows"]
    known = rows[len(rows) // 2]["values"]

    found = get_json(f"{url}?q={quote(known['text'].upper())}")
    assert [row["values"] for row in found["rows"]] == [known]
    found = get_json(f"{url}?q={quote(known['note'].upper())}")
    assert [row["values"] for row in found["rows"]] == [known], "text beyond ASCII is matched too"

    first = get_json(f"{url}?q=SENTENCE&limit=3")
    assert len(first["rows"]) == 3 and first["next_row"] == first["rows"][-1]["row"] + 1
    rest = get_json(f"{url}?q=sentence&start={first['next_row']}&limit=500")
    assert rest["next_row"] is None
    assert len(first["rows"]) + len(rest["rows"]) == len(rows)
    assert get_json(f"{url}?q=text")["rows"] == [], "a key name is not a value"


def test_failed_rows_come_with_their_error_and_input(
    finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    base = serve_ui(finished.root)
    pid = pipeline_id(base)
    page = get_json(f"{base}/api/pipelines/{pid}/steps/0/failures?limit=500")
    status = finished.status_json()
    assert page["total"] == status["steps"][0]["rows_failed"] == len(page["failures"])
    assert all("HTTP 500" in failure["error"] for failure in page["failures"])
    assert all(failure["reason"] == "HTTP 500" for failure in page["failures"])
    assert all(failure["input"] is None for failure in page["failures"]), (
        "step 0's source is not in the cache"
    )
    assert (
        get_json(f"{base}/api/pipelines/{pid}/steps/2/failures")["total"] == status["steps"][2]["rows_failed"]
    )


def test_batch_api_jobs_are_listed_with_status_counts_and_age(
    project: Project, simulator: SimulatorHandle, serve_ui: Callable[[Path], str]
) -> None:
    simulator.configure(batch_processing_seconds=120.0)
    project.env["TEST_OFFLINE"] = "1"
    result = project.datamill("run", "pipeline.py", "--batch-size", "30")
    assert result.returncode == 75, result.stderr
    base = serve_ui(project.root)
    jobs = get_json(f"{base}/api/pipelines/{pipeline_id(base)}/jobs")["jobs"]
    assert jobs and all(job["step"] == 0 and job["job_id"] for job in jobs)
    assert sum(job["n_requests"] for job in jobs) == ROWS
    assert all(job["status"] in ("validating", "in_progress") for job in jobs)
    assert all(0 <= job["age_seconds"] < 120 for job in jobs)


def test_every_pipeline_under_the_given_folder_is_listed(
    finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    other = finished.root / "nested" / "deeper"
    other.mkdir(parents=True)
    (other / "second.state.db").write_bytes((finished.cache / "tr.state.db").read_bytes())
    (finished.root / ".hidden").mkdir()
    (finished.root / ".hidden" / "skipped.state.db").write_bytes(b"")
    base = serve_ui(finished.root)
    listed = get_json(f"{base}/api/pipelines")["pipelines"]
    assert [(p["shown"], p["prefix"]) for p in listed] == [("cache", "tr"), ("nested/deeper", "second")]
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{base}/api/pipelines/nosuchpipeline/status")
    assert refused.value.code == 404


def test_ui_refuses_a_cache_argument_that_is_not_a_directory(project: Project) -> None:
    result = project.datamill("ui", str(project.root / "missing"))
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_ui_says_when_its_port_is_taken(project: Project) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = project.datamill("ui", str(project.root), "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2 and "choose another --port" in result.stderr, result.stderr


def test_no_request_writes_to_the_cache_or_waits_for_its_lock(
    finished: Project, serve_ui: Callable[[Path], str]
) -> None:
    base = serve_ui(finished.root)
    pid = pipeline_id(base)
    with CacheLock(finished.cache / "tr.lock"):  # as a run in another process would hold it
        before = snapshot(finished.cache)
        for path in ("status", "overview", "jobs", "plot.json", "plot.svg"):
            urllib_get(f"{base}/api/pipelines/{pid}/{path}")
        for step in range(3):
            for query in ("rows?offset=3&limit=5", "rows?q=sentence", "failures"):
                urllib_get(f"{base}/api/pipelines/{pid}/steps/{step}/{query}")
        after = snapshot(finished.cache)
    created = {name: entry for name, entry in after.items() if name not in before}
    # a read-only SQLite reader of a WAL database may create the empty write-ahead log
    assert all(name.endswith(".state.db-wal") and entry[0] == 0 for name, entry in created.items()), created
    assert {name: after[name] for name in before} == before


def urllib_get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read()


def build_large_cache(folder: Path, rows: int, batch: int) -> None:
    """One committed JSONL step of ``rows`` rows, written directly with its commit records."""
    folder.mkdir()
    commits = []
    position = 0
    with (folder / "big_step1.jsonl").open("wb") as handle:
        for start in range(0, rows, batch):
            chunk = b"".join(
                b'{"id":%d,"text":"input row %d","out":"generated output %07d"}\n' % (i, i, i)
                for i in range(start, start + batch)
            )
            handle.write(chunk)
            position += len(chunk)
            commit = BatchCommit(
                step=0, in_row_end=start + batch, in_position=0, out_position=position, out_rows=batch,
                failures=[], drops={},
            )  # fmt: skip
            commits.append((start // batch + 1, commit))
    state = StateDB(folder / "big.state.db")
    try:
        doc = {"format": "jsonl", "call": {"input_key": "text", "output_key": "out"}}
        state.save_step(0, "PromptedGenerator", "0" * 64, doc, "done")
        with state.transaction() as conn:
            insert_commits(conn, commits)
            paid = PaidResponse(0, False, "gpt-4o-mini", rows * 10, rows * 20, rows * 1e-5, requests=rows)
            insert_spend(conn, 1, [paid])
        state.set_step_status(0, "done")
    finally:
        state.close()


def fastest(url: str, tries: int = 3) -> tuple[float, bytes]:
    """The quickest of ``tries`` answers (the machine running the tests is shared)."""
    best = float("inf")
    body = b""
    for _ in range(tries):
        started = time.perf_counter()
        body = urllib_get(url)
        best = min(best, time.perf_counter() - started)
    return best, body


def test_a_page_of_a_million_row_step_answers_within_200_ms(
    tmp_path: Path, serve_ui: Callable[[Path], str]
) -> None:
    rows = 1_000_000
    build_large_cache(tmp_path / "big", rows, batch=100)
    base = serve_ui(tmp_path / "big")
    url = f"{base}/api/pipelines/{pipeline_id(base)}"
    for offset in (0, 123_457, 999_950):
        seconds, body = fastest(f"{url}/steps/0/rows?offset={offset}&limit=50")
        page = orjson.loads(body)
        assert page["total"] == rows
        assert [row["values"]["id"] for row in page["rows"]] == list(range(offset, min(rows, offset + 50)))
        assert seconds < 0.2, f"page at row {offset} took {seconds * 1000:.0f} ms"
    for path in ("status", "overview", "plot.svg"):
        seconds, _ = fastest(f"{url}/{path}")
        assert seconds < 0.2, f"{path} took {seconds * 1000:.0f} ms"

    found: list[int] = []
    start = 0
    deadline = time.monotonic() + 60
    while start is not None and not found and time.monotonic() < deadline:
        page = get_json(f"{url}/steps/0/rows?q=OUTPUT%200999998&start={start}")
        found = [row["row"] for row in page["rows"]]
        start = page["next_row"]
    assert found == [999_998]
