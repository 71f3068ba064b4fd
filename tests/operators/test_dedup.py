"""Exact and MinHash deduplication over the whole step input, independent of batch size."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from operator_helpers import drops_table, read_jsonl, run_steps, write_jsonl

from datamill import ExactDeduplicator, MinHashDeduplicator
from datamill.operators.dedup import lsh_parameters

ROWS = [
    {"id": i, "text": ["red apple", "Red  Apple", "green pear", "red apple"][i % 4], "src": i % 2}
    for i in range(12)
]


@pytest.mark.parametrize("batch_size", [1, 5, 100])
def test_exact_dedup_keeps_first_occurrences_whatever_the_batch_size(tmp_path: Path, batch_size: int) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    p = run_steps(
        source, tmp_path / "cache", [(ExactDeduplicator(), {"input_key": "text"})], batch_size=batch_size
    )
    assert [r["id"] for r in read_jsonl(p.step_paths()[0])] == [0, 1, 2]
    assert drops_table(p) == {(0, "duplicate"): 9}


def test_exact_dedup_on_several_keys_on_the_whole_row_and_normalized(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    by_pair = run_steps(source, tmp_path / "a", [(ExactDeduplicator(), {"input_key": ["text", "src"]})])
    assert [r["id"] for r in read_jsonl(by_pair.step_paths()[0])] == [0, 1, 2, 3]
    whole = run_steps(source, tmp_path / "b", [(ExactDeduplicator(), {})])
    assert len(read_jsonl(whole.step_paths()[0])) == 12
    normalized = run_steps(
        source, tmp_path / "c", [(ExactDeduplicator(normalize=True), {"input_key": "text"})]
    )
    assert [r["id"] for r in read_jsonl(normalized.step_paths()[0])] == [0, 2]


def _near_duplicates(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(3000)]
    originals = [[rng.choice(vocabulary) for _ in range(300)] for _ in range(count)]
    rows = [{"id": i, "text": " ".join(words)} for i, words in enumerate(originals)]
    for i, words in enumerate(originals):
        edited = list(words)
        edited[rng.randrange(len(edited))] = "edited"
        rows.append({"id": count + i, "text": " ".join(edited)})
    return rows


@pytest.mark.parametrize("batch_size", [3, 64])
def test_minhash_dedup_drops_near_duplicates_and_keeps_distinct_texts(
    tmp_path: Path, batch_size: int
) -> None:
    rows = _near_duplicates(40)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    p = run_steps(
        source,
        tmp_path / "cache",
        [(MinHashDeduplicator(threshold=0.8), {"input_key": "text"})],
        batch_size=batch_size,
    )
    assert [r["id"] for r in read_jsonl(p.step_paths()[0])] == list(range(40))
    assert drops_table(p) == {(0, "near-duplicate"): 40}


def test_minhash_dedup_is_deterministic_and_has_the_lsh_shape_of_datasketch() -> None:
    op = MinHashDeduplicator(threshold=0.8, num_perm=128)
    rows = _near_duplicates(30)
    first = op.decide(iter(rows), {"input_key": "text"})
    second = MinHashDeduplicator(threshold=0.8, num_perm=128).decide(iter(rows), {"input_key": "text"})
    assert np.array_equal(first, second)
    datasketch = pytest.importorskip("datasketch")
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=128)
    assert lsh_parameters(0.8, 128) == (lsh.b, lsh.r)


def test_dedup_after_filtering_rows_sees_only_its_own_input(tmp_path: Path) -> None:
    from datamill import FilterOperator

    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    steps = [
        (FilterOperator(lambda row: row["src"] == 1, reason="even source"), {}),
        (ExactDeduplicator(), {"input_key": "text"}),
    ]
    p = run_steps(source, tmp_path / "cache", steps, batch_size=2)
    assert [r["id"] for r in read_jsonl(p.step_paths()[1])] == [1, 3]
    assert drops_table(p) == {(0, "even source"): 6, (1, "duplicate"): 4}


def _peak_bytes(op, rows: int) -> int:  # type: ignore[no-untyped-def]
    def stream():  # type: ignore[no-untyped-def]
        for i in range(rows):
            yield {
                "text": f"sentence number {i} about the quick brown fox jumping over the lazy dog {i % 13}"
            }

    tracemalloc.start()
    try:
        op.decide(stream(), {"input_key": "text"})
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_exact_dedup_memory_is_a_few_hashes_per_row_not_the_rows() -> None:
    rows = 200_000
    assert _peak_bytes(ExactDeduplicator(), rows) < 200 * rows  # a row as a dict is > 300 bytes


def test_minhash_dedup_memory_grows_by_its_band_hashes_per_row() -> None:
    op = MinHashDeduplicator()
    growth = _peak_bytes(op, 40_000) - _peak_bytes(op, 20_000)
    assert growth < 200 * 20_000
