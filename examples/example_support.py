"""What every example shares: where the model endpoint is, and where the files go.

``DATAMILL_API_BASE`` — an OpenAI-compatible API base, e.g. ``https://api.openai.com/v1``
(the key comes from ``OPENAI_API_KEY``), or Anthropic's ``https://api.anthropic.com`` with
``DATAMILL_PROVIDER=anthropic`` (key from ``ANTHROPIC_API_KEY``; examples that say so). Unset,
the example starts the bundled provider simulator on a free loopback port for the duration of
the run, so it needs no account.
``DATAMILL_MODEL`` — the model name (``gpt-4o-mini``, or ``claude-haiku-4-5`` for Anthropic).
``DATAMILL_EXAMPLE_CACHE`` — the cache directory (``./demo_cache/<example>`` by default);
rerunning an example resumes there and sends nothing it already has.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def api_base() -> Iterator[str]:
    """The API base URL to use: ``DATAMILL_API_BASE``, or a simulator started for the run."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configured = os.environ.get("DATAMILL_API_BASE")
    if configured:
        yield configured
        return
    from datamill.simulator import run_simulator_process

    with run_simulator_process(batch_processing_seconds=0.5) as simulator:
        url = simulator.anthropic_base if provider() == "anthropic" else simulator.openai_base
        print(f"DATAMILL_API_BASE is not set: using a local simulator at {url}")
        yield url


def provider() -> str:
    """``DATAMILL_PROVIDER``: ``openai`` (any OpenAI-compatible endpoint, the default) or ``anthropic``."""
    return os.environ.get("DATAMILL_PROVIDER", "openai")


def model_name() -> str:
    default = "claude-haiku-4-5" if provider() == "anthropic" else "gpt-4o-mini"
    return os.environ.get("DATAMILL_MODEL", default)


def cache_dir(example: str) -> Path:
    return Path(os.environ.get("DATAMILL_EXAMPLE_CACHE", f"./demo_cache/{example}"))


def write_input(cache: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """Write the example's input rows (once: an existing file is kept, so reruns resume)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / name
    if not path.exists():
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def show(summary: Any, rows: list[dict[str, Any]], keys: list[str], limit: int = 3) -> None:
    """Print what the run did and a few output rows."""
    for step in summary.steps:
        print(
            f"step {step.index} {step.name}: {step.rows_in} in, {step.rows_out} out, "
            f"{step.rows_dropped} dropped, {step.rows_failed} failed"
        )
    print(f"output: {summary.output_path} ({len(rows)} rows)")
    for row in rows[:limit]:
        print("  " + json.dumps({key: row.get(key) for key in keys}, ensure_ascii=False)[:300])
