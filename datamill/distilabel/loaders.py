"""The generator steps: where a distilabel-style pipeline's rows come from.

``LoadDataFromDicts`` (rows given in code), ``LoadDataFromHub`` (``datasets.load_dataset``: a
Hub repository, or a local dataset directory, which works offline) and
``LoadDataFromFileSystem`` (``data_files`` read by ``datasets``). A loader's
``output_mappings`` rename its columns, as in distilabel.

``loader_input_file`` turns the loader into the engine's input: for now it writes the rows to
``{cache_dir}/{loader name}.jsonl``, deterministically (same rows, same bytes), and replaces the
file only when its content changed, so the input's identity, the step fingerprints and resume
stay stable across reruns. Once ``BatchedFileStorage`` takes a ``datasets.Dataset`` or a list
of dicts as its input, this hands the rows to the storage directly instead.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datamill.distilabel.base import Step
from datamill.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    from datamill.distilabel.pipeline import Pipeline

_FILETYPES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


class GeneratorStep(Step):
    """A step with no predecessor that yields the pipeline's rows."""

    RUNTIME_PARAMETERS = ("batch_size",)

    def __init__(
        self,
        *,
        batch_size: int,
        name: str | None,
        output_mappings: dict[str, str] | None,
        pipeline: Pipeline | None,
    ) -> None:
        super().__init__(name=name, input_mappings=None, output_mappings=output_mappings, pipeline=pipeline)
        self.batch_size = batch_size

    def load_rows(self) -> Iterable[dict[str, Any]]:
        """The rows, with their source's column names."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_rows()")

    def rows(self) -> Iterator[dict[str, Any]]:
        """The rows with ``output_mappings`` applied."""
        for row in self.load_rows():
            yield {self.mapped_output(key): value for key, value in dict(row).items()}


class LoadDataFromDicts(GeneratorStep):
    """Rows given as a list of dicts."""

    def __init__(
        self,
        *,
        data: list[dict[str, Any]],
        batch_size: int = 50,
        name: str | None = None,
        output_mappings: dict[str, str] | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise ConfigError("LoadDataFromDicts(data=...) takes a list of dicts, one per row")
        super().__init__(batch_size=batch_size, name=name, output_mappings=output_mappings, pipeline=pipeline)
        self.data = data

    def load_rows(self) -> Iterable[dict[str, Any]]:
        return self.data


class LoadDataFromHub(GeneratorStep):
    """A dataset loaded by ``datasets.load_dataset(repo_id, config, split=split, ...)``.

    ``repo_id`` may be a Hub repository or a local dataset directory (data files such as
    ``test.jsonl``, or a directory written by ``save_to_disk``); a local one needs no network.
    ``num_examples`` keeps the first N rows.
    """

    RUNTIME_PARAMETERS = ("batch_size", "repo_id", "split", "config", "revision", "streaming", "num_examples")

    def __init__(
        self,
        *,
        repo_id: str | None = None,
        split: str = "train",
        config: str | None = None,
        revision: str | None = None,
        streaming: bool = False,
        num_examples: int | None = None,
        batch_size: int = 50,
        name: str | None = None,
        output_mappings: dict[str, str] | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, name=name, output_mappings=output_mappings, pipeline=pipeline)
        self.repo_id = repo_id
        self.split = split
        self.config = config
        self.revision = revision
        self.streaming = streaming
        self.num_examples = num_examples

    def load_rows(self) -> Iterable[dict[str, Any]]:
        if not self.repo_id:
            raise ConfigError(
                f"step {self.name!r} needs repo_id: pass it to LoadDataFromHub(...) or in "
                f"pipeline.run(parameters={{{self.name!r}: {{'repo_id': ...}}}})"
            )
        datasets = import_datasets()
        where = f"{self.repo_id!r} (config {self.config!r}, split {self.split!r})"
        try:
            if is_saved_dataset(self.repo_id):
                loaded = datasets.load_from_disk(self.repo_id)
                dataset = loaded[self.split] if isinstance(loaded, datasets.DatasetDict) else loaded
            else:
                dataset = datasets.load_dataset(
                    self.repo_id,
                    self.config,
                    split=self.split,
                    revision=self.revision,
                    streaming=self.streaming,
                )
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(
                f"cannot load dataset {where}: {exc}. Check repo_id (a Hub id or a local dataset "
                "directory), config and split."
            ) from exc
        return first(dataset, self.num_examples)


class LoadDataFromFileSystem(GeneratorStep):
    """Rows from ``data_files`` (a path, a glob, or a list of them) read by ``datasets``.

    ``filetype`` (``json``, ``csv``, ``parquet``, ``text``) is taken from the extension when
    not given; ``.jsonl`` reads as ``json``.
    """

    RUNTIME_PARAMETERS = ("batch_size", "data_files", "split", "filetype", "streaming", "num_examples")

    def __init__(
        self,
        *,
        data_files: str | Path | list[str] | None = None,
        split: str = "train",
        filetype: str | None = None,
        streaming: bool = False,
        num_examples: int | None = None,
        batch_size: int = 50,
        name: str | None = None,
        output_mappings: dict[str, str] | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, name=name, output_mappings=output_mappings, pipeline=pipeline)
        self.data_files = data_files
        self.split = split
        self.filetype = filetype
        self.streaming = streaming
        self.num_examples = num_examples

    def load_rows(self) -> Iterable[dict[str, Any]]:
        if not self.data_files:
            raise ConfigError(f"step {self.name!r} needs data_files: a path, a glob or a list of them")
        files = (
            [str(f) for f in self.data_files] if isinstance(self.data_files, list) else str(self.data_files)
        )
        filetype = self.filetype or _FILETYPES.get(
            Path(files[0] if isinstance(files, list) else files).suffix
        )
        if filetype is None:
            raise ConfigError(f"step {self.name!r}: cannot tell the file type of {files!r}; pass filetype=")
        datasets = import_datasets()
        try:
            dataset = datasets.load_dataset(
                filetype, data_files=files, split=self.split, streaming=self.streaming
            )
        except (OSError, ValueError) as exc:
            raise InputFileError(f"cannot read {files!r} as {filetype}: {exc}") from exc
        return first(dataset, self.num_examples)


def loader_input_file(loader: GeneratorStep, cache_dir: Path) -> Path:
    """Write the loader's rows to ``{cache_dir}/{name}.jsonl`` (kept as is when unchanged).

    The content is a pure function of the rows (key order kept, ``ensure_ascii=False``, values
    JSON cannot hold written as their ``str``), so an unchanged dataset keeps the same file and
    the same fingerprints; a changed one replaces it atomically and the run recomputes.
    """
    # Until BatchedFileStorage takes a datasets.Dataset or a list of dicts as its input: once it
    # does, hand the loader's dataset (or list) to the storage here instead of writing a copy.
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{loader.name}.jsonl"
    scratch = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # one per process: never shared
    digest = hashlib.sha256()
    with scratch.open("wb") as handle:
        for row in loader.rows():
            line = (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")
            digest.update(line)
            handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    if target.exists() and file_sha256(target) == digest.hexdigest():
        scratch.unlink()
    else:
        os.replace(scratch, target)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first(rows: Iterable[dict[str, Any]], count: int | None) -> Iterable[dict[str, Any]]:
    return rows if count is None else itertools.islice(rows, count)


def is_saved_dataset(path: str) -> bool:
    """True for a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    folder = Path(path)
    return folder.is_dir() and ((folder / "dataset_dict.json").exists() or (folder / "state.json").exists())


def import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "loading datasets needs the datasets package: pip install 'datamill[distilabel]'"
        ) from None
    return datasets
