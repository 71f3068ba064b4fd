"""What the page shows beside ``datamill status --json``: per-step reasons, this run's spend
(from the ledger's spend records, ``datamill.core.spend``),
the columns a step reads and writes, failed rows with their inputs, and the Batch API jobs.

Every function reads through a read-only ``StateDB`` and writes nothing.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from datamill.cli.cachedir import CacheDir
from datamill.core.state import StateDB
from datamill.ui.web.rows import CommitIndexes, read_page

_URL = re.compile(r"https?://\S+?(?=[\s:,;)]|$)")
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")
_RETRY_SUMMARY = re.compile(r"^gave up after [^:]*:\s*")
#: Distinct error texts read per step to group failures by reason.
MAX_DISTINCT_ERRORS = 10_000
JOB_COLUMNS = (
    "chunk_id, step, provider, model, n_requests, state, job_id, status, completed, failed, "
    "created_at, updated_at"
)


def failure_reason(error: str) -> str:
    """An error's reason, for counting: its HTTP status if it names one (``HTTP 500``), else its
    first clause with URLs and the retry summary (``gave up after 3 attempts over 2.0s:``) left out."""
    status = _HTTP_STATUS.search(error)
    if status:
        return f"HTTP {status.group(1)}"
    text = _URL.sub("", error.splitlines()[0] if error else "").strip(" :")
    head, _, _ = _RETRY_SUMMARY.sub("", text).partition(": ")
    return head.strip(" :")[:120] or "unknown error"


def step_details(state: StateDB, run_started_at: float | None) -> list[dict[str, Any]]:
    """Per step: failed and dropped rows by reason, this run's spend, and the step's columns."""
    details = []
    for index in range(state.step_count()):
        stored = state.load_step(index) or {}
        doc = stored.get("doc") or {}
        inputs, outputs = _columns(doc.get("call") or {})
        since = run_started_at if run_started_at is not None else float("inf")
        spent = state.conn.execute(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost_usd), 0), "
            "COALESCE(SUM(unpriced), 0) FROM spend WHERE step=? AND recorded_at>=?",
            (index, since),
        ).fetchone()
        rows_out = state.conn.execute(
            "SELECT COALESCE(SUM(out_rows), 0) FROM commits WHERE step=? AND committed_at>=?", (index, since)
        ).fetchone()[0]
        failed: Counter[str] = Counter()
        for error, count in state.conn.execute(
            "SELECT error, COUNT(*) FROM failures WHERE step=? GROUP BY error LIMIT ?",
            (index, MAX_DISTINCT_ERRORS),
        ):
            failed[failure_reason(str(error))] += int(count)
        model = ((doc.get("config") or {}).get("llm_serving") or {}).get("model")
        details.append(
            {
                "index": index,
                "format": doc.get("format", "jsonl"),
                "model": model,
                "input_columns": inputs,
                "output_columns": outputs,
                "run_tokens": int(spent[0]),
                "run_cost_usd": None if spent[2] else float(spent[1]),
                "run_rows_out": int(rows_out),
                "failed_by_reason": dict(failed.most_common()),
                "dropped_by_reason": state.drop_reasons(index),
            }
        )
    return details


def _columns(call: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The columns an operator call reads and writes, from its ``input_*`` / ``output_*`` keys."""
    inputs: list[str] = []
    outputs: list[str] = []
    for key, value in call.items():
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        names = [name for name in names if isinstance(name, str)]
        if key.startswith("input"):
            inputs.extend(names)
        elif key.startswith("output"):
            outputs.extend(names)
    return list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))


def read_failures(
    cache: CacheDir, state: StateDB, indexes: CommitIndexes, step: int, offset: int, limit: int
) -> dict[str, Any]:
    """A page of step ``step``'s failed rows: input row number, error, reason and — past the
    first step, whose source file the cache does not name — the input row itself."""
    total = state.failure_count(step)
    failures = state.conn.execute(
        "SELECT input_row, error FROM failures WHERE step=? ORDER BY input_row LIMIT ? OFFSET ?",
        (step, limit, offset),
    ).fetchall()
    rows = []
    for input_row, error in failures:
        source = None
        if step > 0:
            page = read_page(cache, state, indexes, step - 1, int(input_row), 1)
            source = page.rows[0][1] if page.rows else None
        rows.append(
            {"input_row": int(input_row), "error": error, "reason": failure_reason(error), "input": source}
        )
    return {"total": total, "offset": offset, "failures": rows}


def read_jobs(state: StateDB, limit: int = 500) -> list[dict[str, Any]]:
    """The offline store's Batch API jobs, newest first, with their age in seconds."""
    exists = state.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='offline_batch_jobs'"
    ).fetchone()
    if exists is None:
        return []
    cursor = state.conn.execute(
        f"SELECT {JOB_COLUMNS} FROM offline_batch_jobs ORDER BY created_at DESC LIMIT ?", (limit,)
    )
    names = [column[0] for column in cursor.description]
    now = time.time()
    jobs = []
    for values in cursor:
        job = dict(zip(names, values, strict=True))
        job["age_seconds"] = max(0.0, now - float(job["created_at"]))
        jobs.append(job)
    return jobs
