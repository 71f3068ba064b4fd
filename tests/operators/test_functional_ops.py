"""Map, filter and expand operators around plain functions; editing a function reruns its step."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from operator_helpers import drops_table, failures_table, read_jsonl, run_steps, write_jsonl

from datamill import ExpandOperator, FilterOperator, MapOperator
from datamill.operators.functional import function_identity

ROWS = [{"id": i, "text": f"alpha beta {i}"} for i in range(10)]


def shout(text: str) -> str:
    return text.upper()


def is_even(row: dict) -> bool:
    return row["id"] % 2 == 0


def words(text: str) -> list[str]:
    return text.split()


def test_map_filter_expand_compose_in_a_pipeline(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    steps = [
        (MapOperator(shout), {"input_key": "text", "output_key": "loud"}),
        (FilterOperator(is_even), {}),
        (ExpandOperator(words), {"input_key": "loud", "output_key": "word"}),
        (
            MapOperator(lambda row: {"id": row["id"], "word": row["word"].lower()}),
            {"input_key": ["id", "word"]},
        ),
    ]
    p = run_steps(source, tmp_path / "cache", steps, batch_size=3)
    out = read_jsonl(p.step_paths()[-1])
    assert out[:3] == [{"id": 0, "word": "alpha"}, {"id": 0, "word": "beta"}, {"id": 0, "word": "0"}]
    assert len(out) == 15
    assert drops_table(p) == {(1, "is_even returned False"): 5}
    assert [s.rows_out for s in p.last_summary.steps] == [10, 5, 15, 15]


def test_a_raising_function_fails_its_row_and_records_the_error(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"n": 1}, {"n": 0}, {"n": 4}])
    p = run_steps(
        source,
        tmp_path / "cache",
        [(MapOperator(lambda n: 8 // n), {"input_key": "n", "output_key": "q"})],
        allow_failures=True,
    )
    assert read_jsonl(p.step_paths()[0]) == [{"n": 1, "q": 8}, {"n": 4, "q": 2}]
    [(step, row, error)] = failures_table(p)
    assert (step, row) == (0, 1) and "ZeroDivisionError" in error


def test_an_expansion_to_nothing_is_counted_as_dropped(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"t": "a b"}, {"t": ""}])
    p = run_steps(
        source, tmp_path / "cache", [(ExpandOperator(words), {"input_key": "t", "output_key": "w"})]
    )
    assert [r["w"] for r in read_jsonl(p.step_paths()[0])] == ["a", "b"]
    assert drops_table(p) == {(0, "expanded to no rows"): 1}


def _load(module_dir: Path, body: str):  # type: ignore[no-untyped-def]
    (module_dir / "user_steps.py").write_text(body)
    sys.modules.pop("user_steps", None)
    importlib.invalidate_caches()
    return importlib.import_module("user_steps").transform


def test_editing_the_function_marks_the_step_stale(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    source = write_jsonl(tmp_path / "in.jsonl", ROWS[:3])
    first = _load(tmp_path, "def transform(text):\n    return text + '!'\n")
    first_identity = function_identity(first)
    p = run_steps(
        source, tmp_path / "cache", [(MapOperator(first), {"input_key": "text", "output_key": "out"})]
    )
    assert read_jsonl(p.step_paths()[0])[0]["out"] == "alpha beta 0!"

    again = _load(tmp_path, "def transform(text):\n    return text + '!'\n")
    p = run_steps(
        source, tmp_path / "cache", [(MapOperator(again), {"input_key": "text", "output_key": "out"})]
    )
    assert p.last_summary.already_complete

    edited = _load(tmp_path, "def transform(text):\n    return text + '??'\n")
    assert function_identity(edited)["name"] == first_identity["name"] == "user_steps.transform"
    assert function_identity(edited)["sha256"] != first_identity["sha256"]
    p = run_steps(
        source, tmp_path / "cache", [(MapOperator(edited), {"input_key": "text", "output_key": "out"})]
    )
    assert any("config.function.sha256 changed" in reason for reason in p.last_summary.steps[0].changes)
    assert [r["out"] for r in read_jsonl(p.step_paths()[0])] == [f"alpha beta {i}??" for i in range(3)]


def test_config_values_enter_the_fingerprint() -> None:
    assert (
        MapOperator(shout, config={"k": 1}).fingerprint_config()
        != MapOperator(shout, config={"k": 2}).fingerprint_config()
    )
    assert "0x" not in str(MapOperator(shout).fingerprint_config())
