"""Pipeline inputs beyond one plain JSONL, CSV or Parquet file: what ``first_entry_file_name`` accepts.

``resolve_input`` turns what the user gave into an ``InputSource`` — or ``None`` when the plain
row-file readers of ``datamill.core.rowfiles`` handle it. Accepted forms:

- ``"hf:NAME[:CONFIG][@SPLIT]"``: a Hugging Face dataset through ``datasets.load_dataset``
  (a hub name, or a local dataset folder of JSONL/CSV/Parquet files; the split defaults to
  ``train``; ``HF_DATASETS_OFFLINE=1`` reads the local hub cache only);
- a ``datasets.Dataset`` or ``datasets.IterableDataset`` object, or a folder written by
  ``Dataset.save_to_disk``;
- a pandas ``DataFrame`` object;
- a list of dicts (one row each);
- a ``.json`` file holding an array of objects (``.json`` files of JSON lines stay JSONL);
- ``.jsonl.gz`` / ``.jsonl.zst`` (also ``.ndjson`` and ``.json`` arrays, compressed);
- a folder of Parquet files (read in name order, subfolders included).

Every source streams: it hands out ``(row, position)`` pairs and seeks to a position it handed
out before, as the row-file readers do, so memory stays flat in the number of rows and a resume
starts where the last commit ended. Each source also has an ``identity``: its content hash, or
for a dataset its name, config, split and the fingerprint ``datasets`` keeps for its content.
The identity goes into the first step's fingerprint, so a changed input marks the pipeline stale
and an unchanged one resumes.

Heavy modules (``datasets``, ``pandas``, ``pyarrow``, ``zstandard``) are imported only by the
source that needs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamill.errors import ConfigError

Row = dict[str, Any]
HF_PREFIX = "hf:"
ACCEPTED_FORMS = (
    "a .jsonl/.csv/.parquet/.json file, .jsonl.gz/.jsonl.zst, a folder of Parquet files or one written "
    "by Dataset.save_to_disk, 'hf:NAME[:CONFIG][@SPLIT]', a datasets.Dataset or IterableDataset, a pandas "
    "DataFrame, or a list of dicts"
)


class InputSource:
    """A streamed input with resumable positions and a stable identity.

    ``iter_from(position)`` yields each row with the position just after it; passing that
    position back later continues with the next row. ``count`` is the number of rows, or
    None when unknown without reading everything. ``identity`` is a JSON-able dict that
    changes when the content does.
    """

    #: The reader format the step plan records for this input.
    fmt = "source"

    def __init__(self, label: str) -> None:
        self.label = label

    def __str__(self) -> str:
        return self.label

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        raise NotImplementedError

    def count(self) -> int | None:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def exists(self) -> bool:
        return True


def resolve_input(spec: Any) -> InputSource | None:
    """The ``InputSource`` for ``spec``, or None when ``spec`` is a plain row file.

    Raises ``ConfigError`` for a value of a type no source accepts.
    """
    if isinstance(spec, InputSource):
        return spec
    if isinstance(spec, str) and spec.startswith(HF_PREFIX):
        from datamill.core.hf_inputs import HubDatasetSource

        return HubDatasetSource.from_spec(spec)
    if isinstance(spec, (list, tuple)):
        from datamill.core.table_inputs import RowListSource

        return RowListSource(list(spec))
    if isinstance(spec, (str, os.PathLike)):
        return _resolve_path(Path(spec))
    module = type(spec).__module__.split(".")[0]
    if module == "datasets":
        from datamill.core.hf_inputs import dataset_source

        return dataset_source(spec)
    if module == "pandas" and type(spec).__name__ == "DataFrame":
        from datamill.core.table_inputs import DataFrameSource

        return DataFrameSource(spec)
    raise ConfigError(f"first_entry_file_name got a {type(spec).__name__}; it accepts {ACCEPTED_FORMS}")


def _resolve_path(path: Path) -> InputSource | None:
    name = path.name.lower()
    if name.endswith((".gz", ".zst", ".zstd")):
        from datamill.core.json_inputs import compressed_source

        return compressed_source(path)
    if name.endswith(".json") and path.is_file():
        from datamill.core.json_inputs import JsonArraySource, holds_json_array

        return JsonArraySource(path) if holds_json_array(path) else None
    if path.is_dir():
        if name.endswith(".parquet") and ((path / "part-000000.parquet").exists() or not any(path.iterdir())):
            return None  # a datamill Parquet step folder: the row-file reader's own format
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            from datamill.core.hf_inputs import saved_dataset_source

            return saved_dataset_source(path)
        from datamill.core.table_inputs import ParquetFolderSource

        return ParquetFolderSource(path)
    return None


def input_identity(path: Path | InputSource) -> dict[str, Any]:
    """The identity that goes into the first step's fingerprint."""
    if isinstance(path, InputSource):
        return path.identity()
    from datamill.core.fingerprint import file_identity

    return file_identity(path)


def input_exists(path: Path | InputSource) -> bool:
    return path.exists() if isinstance(path, InputSource) else os.path.exists(path)
