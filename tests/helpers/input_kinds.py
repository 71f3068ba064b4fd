"""Every kind of pipeline input, built locally from a list of rows (no network).

``write_input(kind, folder, rows)`` writes the rows in that kind's form on disk and returns a
string; ``open_input(kind, written)`` turns that string into what a user would pass as
``first_entry_file_name`` (the path or ``hf:`` spec itself, or a Dataset, IterableDataset,
DataFrame or list built from it). The two halves let a pipeline script in a fresh process
rebuild the same input, as a rerun after a kill would.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

KINDS = (
    "json_array",
    "json_array_gz",
    "jsonl_gz",
    "jsonl_zst",
    "parquet_folder",
    "saved_dataset",
    "hub_spec",
    "dataset",
    "iterable_dataset",
    "dataframe",
    "list",
)


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def write_input(kind: str, folder: Path, rows: list[dict[str, Any]]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "json_array":
        path = folder / "in.json"
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    elif kind == "json_array_gz":
        path = folder / "in.json.gz"
        path.write_bytes(gzip.compress(json.dumps(rows).encode()))
    elif kind == "jsonl_gz":
        path = folder / "in.jsonl.gz"
        path.write_bytes(gzip.compress(jsonl_bytes(rows)))
    elif kind == "jsonl_zst":
        import zstandard

        path = folder / "in.jsonl.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(rows)))
    elif kind == "parquet_folder":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "parquet-in"
        (path / "more").mkdir(parents=True)
        half = len(rows) // 2
        pq.write_table(pa.Table.from_pylist(rows[:half]), path / "a.parquet", row_group_size=300)
        pq.write_table(pa.Table.from_pylist(rows[half:]), path / "more" / "b.parquet", row_group_size=700)
    elif kind in ("saved_dataset", "dataset", "iterable_dataset"):
        import datasets

        path = folder / "saved"
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    elif kind == "hub_spec":
        path = folder / "local-dataset"
        path.mkdir()
        (path / "train.jsonl").write_bytes(jsonl_bytes(rows))
        return f"hf:{path}"
    elif kind in ("dataframe", "list"):
        path = folder / "rows.jsonl"
        path.write_bytes(jsonl_bytes(rows))
    else:
        raise ValueError(f"unknown input kind {kind!r}")
    return str(path)


def open_input(kind: str, written: str) -> Any:
    if kind in ("dataset", "iterable_dataset"):
        import datasets

        dataset = datasets.load_from_disk(written)
        return dataset if kind == "dataset" else dataset.to_iterable_dataset()
    if kind == "dataframe":
        import pandas as pd

        return pd.read_json(written, lines=True)
    if kind == "list":
        return [json.loads(line) for line in Path(written).read_text(encoding="utf-8").splitlines()]
    return written


def make_input(kind: str, folder: Path, rows: list[dict[str, Any]]) -> Any:
    return open_input(kind, write_input(kind, folder, rows))
