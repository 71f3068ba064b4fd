"""The Batch API path redacts the API key exactly like the online path: a provider that echoes
the key in its errors puts it in no file of the cache directory, no log line, no exception and
no ``datamill jobs`` output."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from offline_helpers import FAST_BATCHES, OfflinePipeline, run_until_done, write_questions

from datamill.errors import DatamillError, RowsFailedError

KEY = "sk-proj-DISTINCTIVE-batch-key-5c2e9a7d41"


def files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize(
    "knobs",
    [{"batch_failed_line_rate": 1.0}, {"openai_batch_max_lines": 5}],
    ids=["failed-lines", "failed-validation"],
)
def test_provider_errors_echoing_the_key_are_redacted_everywhere(
    make_simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, knobs
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    sim = make_simulator(require_api_key=KEY, echo_api_key=1, **knobs, **FAST_BATCHES)
    source = write_questions(tmp_path / "in.jsonl", 20)
    cache = tmp_path / "cache"
    with pytest.raises(RowsFailedError) as caught:
        run_until_done(lambda: OfflinePipeline(source, cache, sim.openai_base))
    assert "[REDACTED]" in str(caught.value)  # the provider's message is kept, the key is not
    assert KEY not in str(caught.value)
    assert files_containing(cache, KEY) == []
    assert KEY not in caplog.text
    assert all(KEY not in str(record.args) for record in caplog.records)


def test_a_refused_key_echoed_by_the_batch_api_is_redacted_in_errors_and_datamill_jobs(
    make_simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from datamill.cli.app import _register_commands, app

    _register_commands()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    sim = make_simulator(
        echo_api_key=1,
        batch_validating_seconds=0.01,
        batch_processing_seconds=30,
        batch_finalizing_seconds=0.01,
    )
    source = write_questions(tmp_path / "in.jsonl", 20)
    cache = tmp_path / "cache"
    with pytest.raises(DatamillError):
        OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)  # submitted, not finished
    time.sleep(0.1)
    sim.configure(require_api_key=KEY + "-rotated")  # the provider now refuses, echoing what it got
    with pytest.raises(DatamillError) as caught:
        OfflinePipeline(source, cache, sim.openai_base).forward(batch_size=16)
    assert "401" in str(caught.value) and KEY not in str(caught.value)
    listed = CliRunner().invoke(app, ["jobs", str(cache)], env={"COLUMNS": "250", "OPENAI_API_KEY": KEY})
    assert "401" in listed.output and KEY not in listed.output
    assert files_containing(cache, KEY) == []
    assert KEY not in caplog.text
