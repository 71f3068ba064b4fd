"""A missing, empty or unreadable state database beside step files stops the run: nothing is
truncated or paid again unless the user starts over, and then the old files are kept aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import AnswerPipeline, questions, write_jsonl

from datamill.errors import StateError

ROWS = 12


def damage(state_path: Path, how: str) -> None:
    for companion in ("-wal", "-shm"):
        state_path.with_name(state_path.name + companion).unlink(missing_ok=True)
    if how == "missing":
        state_path.unlink()
    elif how == "empty":
        state_path.write_bytes(b"")
    else:
        state_path.write_bytes(b"this is not an SQLite database" * 100)


@pytest.mark.parametrize("how", ["missing", "empty", "unreadable"])
def test_a_lost_state_database_stops_the_run_and_starting_over_keeps_the_old_files_aside(
    simulator, tmp_path: Path, how: str
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", questions(ROWS))
    cache = tmp_path / "cache"
    AnswerPipeline(source, cache, simulator.openai_base).forward(batch_size=4)
    p = AnswerPipeline(source, cache, simulator.openai_base)
    step_file = p.storage.step_path(0)
    committed = step_file.read_bytes()
    damage(p.storage.state_path, how)
    requests = simulator.stats()["requests"]

    with pytest.raises(StateError) as caught:
        p.forward(batch_size=4)
    message = str(caught.value)
    assert str(p.storage.state_path) in message and step_file.name in message
    assert {"missing": "is missing", "empty": "is empty (0 bytes)", "unreadable": "cannot be read"}[
        how
    ] in message
    assert "restore" in message and "--fresh" in message and "resume_from_last=False" in message
    assert step_file.read_bytes() == committed  # nothing truncated
    assert simulator.stats()["requests"] == requests  # nothing paid again

    summary = p.forward(batch_size=4, resume_from_last=False)
    assert summary.steps[0].rows_out == ROWS
    (aside,) = cache.glob("ans.set-aside-*")
    assert (aside / step_file.name).read_bytes() == committed
    assert [int(row["id"]) for row in p.rows()] == list(range(ROWS))
