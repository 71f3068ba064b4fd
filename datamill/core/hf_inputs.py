"""Hugging Face ``datasets`` inputs: ``"hf:NAME[:CONFIG][@SPLIT]"``, ``Dataset`` and
``IterableDataset`` objects, and folders written by ``Dataset.save_to_disk`` (read by pyarrow
alone, from the Arrow files their ``state.json`` lists, without importing ``datasets``).

A ``Dataset`` is memory-mapped Arrow: rows are read a chunk at a time by index, so the position
after a row is its 1-based index and a resume jumps straight there. Rows are the Arrow storage
as plain Python values (an ``Image`` column gives ``{"bytes", "path"}`` dicts, not PIL images),
so they can be written to the step files as they are.

Identity: what ``datasets`` itself uses to tell datasets apart — the dataset's fingerprint
(derived from the data files and their revision for ``load_dataset``, kept in the folder by
``save_to_disk``, hashed from the content for ``Dataset.from_dict``) — with the name, config,
split and row count. An ``IterableDataset`` has no fingerprint, and reading it whole at every
start would defeat streaming: it is identified by its info and a hash of its first rows, and a
resume skips the rows already done (reading through them, without calling any model).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datamill.core.inputs import HF_PREFIX, InputSource, Row
from datamill.core.table_inputs import hash_rows
from datamill.errors import ConfigError, InputFileError

CHUNK_ROWS = 1024
DEFAULT_SPLIT = "train"
#: Rows of an IterableDataset hashed into its identity.
HEAD_ROWS = 100


def require_datasets(what: str) -> Any:
    """The ``datasets`` module, or a ConfigError that says how to install it."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{what} needs the datasets package: pip install 'datamill[hf]'") from None
    return datasets


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """``"hf:NAME[:CONFIG][@SPLIT]"`` → (name, config or None, split; ``train`` by default)."""
    body = spec[len(HF_PREFIX) :]
    body, at, split = body.rpartition("@") if "@" in body else (body, "", "")
    name, _, config = body.partition(":")
    if not name or (at and not split):
        raise ConfigError(f"{spec!r} is not 'hf:NAME[:CONFIG][@SPLIT]', e.g. 'hf:openai/gsm8k:main@test'")
    return name, config or None, split or DEFAULT_SPLIT


def dataset_source(dataset: Any) -> InputSource:
    """The source of a ``datasets`` object given in Python."""
    kind = type(dataset).__name__
    if kind == "Dataset":
        return DatasetSource(f"<Dataset of {len(dataset)} rows>", {"kind": "dataset"}, dataset)
    if kind == "IterableDataset":
        return IterableDatasetSource(dataset)
    if kind in ("DatasetDict", "IterableDatasetDict"):
        raise ConfigError(
            f"the input is a {kind} of splits {sorted(dataset)}; pass one split, e.g. dataset['train']"
        )
    raise ConfigError(f"the input is a datasets.{kind}; pass a Dataset or an IterableDataset")


def saved_dataset_source(path: Path) -> InputSource:
    """The source of a folder written by ``save_to_disk`` (one split; a DatasetDict's split folder)."""
    if (path / "dataset_dict.json").exists():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise ConfigError(
            f"{path} holds a DatasetDict of splits {splits}; give one split's folder, e.g. {path / splits[0]}"
            if splits
            else f"{path} holds an empty DatasetDict"
        )
    return SavedArrowSource(path, *_saved_layout(path))


def _saved_layout(path: Path) -> tuple[list[Path], str]:
    """The Arrow files and the fingerprint that a ``save_to_disk`` folder's ``state.json`` lists."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        files = [path / str(entry["filename"]) for entry in state["_data_files"]]
        fingerprint = str(state["_fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(
            f"{path}: its state.json does not list the Arrow files and fingerprint that save_to_disk "
            f"writes ({type(exc).__name__}: {exc}); pass datasets.load_from_disk(folder) instead"
        ) from None
    if not files or state.get("_indices_data_files"):
        raise InputFileError(
            f"{path}: a save_to_disk folder with no data file, or with an indices mapping; "
            "pass datasets.load_from_disk(folder) instead"
        )
    return files, fingerprint


class SavedArrowSource(InputSource):
    """A ``save_to_disk`` folder read by pyarrow alone, batch by batch.

    The Arrow files are read, not memory-mapped: mapped pages that were read stay in the
    process's resident memory, which would grow with the dataset (40 MB more for a 1M-row
    folder of short texts).

    It gives the rows ``datasets.load_from_disk`` would, without importing ``datasets``
    (about 100 MB of memory and a second or more at every start); its identity is the
    fingerprint that ``save_to_disk`` kept in ``state.json`` and the row count.
    """

    def __init__(self, path: Path, files: list[Path], fingerprint: str) -> None:
        super().__init__(str(path))
        self.path = path
        self.files = files
        self.fingerprint = fingerprint

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        index = 0
        for batch in self._batches():
            if index + batch.num_rows <= position:
                index += batch.num_rows
                continue
            for start in range(max(0, position - index), batch.num_rows, CHUNK_ROWS):
                for offset, row in enumerate(batch.slice(start, CHUNK_ROWS).to_pylist()):
                    yield row, index + start + offset + 1
            index += batch.num_rows

    def count(self) -> int | None:
        return sum(batch.num_rows for batch in self._batches())

    def identity(self) -> dict[str, Any]:
        return {"kind": "saved_dataset", "fingerprint": self.fingerprint, "rows": self.count()}

    def exists(self) -> bool:
        return all(file.is_file() for file in self.files)

    def _batches(self) -> Iterator[Any]:
        import pyarrow as pa

        for file in self.files:
            try:
                with pa.OSFile(str(file)) as handle:
                    yield from pa.ipc.open_stream(handle)
            except (OSError, pa.ArrowInvalid) as exc:
                raise InputFileError(
                    f"{file}: not a readable Arrow stream ({exc}); write the folder again with save_to_disk"
                ) from None


class DatasetSource(InputSource):
    """A ``datasets.Dataset``, read by row index in Arrow chunks."""

    def __init__(self, label: str, identity: dict[str, Any], dataset: Any = None) -> None:
        super().__init__(label)
        self._identity = identity
        self._dataset = dataset
        self._arrow: Any = None

    def dataset(self) -> Any:
        if self._dataset is None:
            self._dataset = self.load()
        return self._dataset

    def load(self) -> Any:
        raise NotImplementedError

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        if self._arrow is None:
            self._arrow = self.dataset().with_format("arrow")
        total = len(self._arrow)
        for start in range(position, total, CHUNK_ROWS):
            for offset, row in enumerate(self._arrow[start : start + CHUNK_ROWS].to_pylist()):
                yield row, start + offset + 1

    def count(self) -> int | None:
        return len(self.dataset())

    def identity(self) -> dict[str, Any]:
        dataset = self.dataset()
        return {**self._identity, "fingerprint": dataset._fingerprint, "rows": len(dataset)}


class HubDatasetSource(DatasetSource):
    """A dataset through ``datasets.load_dataset(name, config, split=split, revision=revision)``,
    loaded on first use.

    ``"hf:NAME[:CONFIG][@SPLIT]"`` makes one (``from_spec``); fronts such as a
    ``LoadDataFromHub(repo_id, split, config)`` build one directly, with a ``revision`` if
    they pin one, and pass it as ``first_entry_file_name``.
    """

    def __init__(
        self, name: str, config: str | None = None, split: str = DEFAULT_SPLIT, *, revision: str | None = None
    ) -> None:
        self.name, self.config, self.split, self.revision = name, config, split, revision
        label = f"{HF_PREFIX}{name}" + (f":{config}" if config else "") + f"@{split}"
        identity: dict[str, Any] = {"hf_dataset": name, "config": config, "split": split}
        if revision is not None:
            identity["revision"] = revision
        super().__init__(label, identity)

    @classmethod
    def from_spec(cls, spec: str) -> HubDatasetSource:
        return cls(*parse_hf_spec(spec))

    def load(self) -> Any:
        datasets = require_datasets(f"the input {self.label!r}")
        try:
            return datasets.load_dataset(self.name, self.config, split=self.split, revision=self.revision)
        except Exception as exc:  # datasets raises many types: missing, offline, bad config or split
            raise InputFileError(
                f"{self.label}: datasets.load_dataset({self.name!r}, {self.config!r}, split={self.split!r}) "
                f"failed ({type(exc).__name__}: {exc}); check the name, config and split; without network, "
                "set HF_DATASETS_OFFLINE=1 to read the local hub cache, or give a local dataset folder"
            ) from None


class IterableDatasetSource(InputSource):
    """A ``datasets.IterableDataset``: streamed; a resume skips the rows already done."""

    def __init__(self, dataset: Any) -> None:
        super().__init__("<IterableDataset>")
        self.dataset = dataset

    def iter_from(self, position: int = 0) -> Iterator[tuple[Row, int]]:
        stream = self.dataset.skip(position) if position else self.dataset
        for offset, row in enumerate(stream):
            yield dict(row), position + offset + 1

    def count(self) -> int | None:
        info = self.dataset.info
        split = info.splits.get(str(self.dataset.split)) if info.splits and self.dataset.split else None
        return int(split.num_examples) if split is not None and split.num_examples else None

    def identity(self) -> dict[str, Any]:
        info = self.dataset.info
        head = (row for row, _ in itertools.islice(self.iter_from(0), HEAD_ROWS))
        described = {
            "dataset_name": info.dataset_name,
            "config_name": info.config_name,
            "split": str(self.dataset.split) if self.dataset.split else None,
            "version": str(info.version) if info.version else None,
            "download_checksums": sorted(info.download_checksums or {}),
        }
        return {"kind": "iterable_dataset", **described, "head_sha256": hash_rows(head)}
