"""``BatchedFileStorage``: where a pipeline's input is and where its step files go.

The storage names the files of the cache directory (``{prefix}_step{k}.{ext}`` for operator
k-1, ``{prefix}.state.db``, ``{prefix}.lock``) and records the steps of ``forward()`` while
``compile()`` traces it. It never holds rows in memory: the engine streams them.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamill.core.inputs import InputSource, resolve_input
from datamill.core.lock import CacheLock
from datamill.core.rowfiles import FORMATS, Row, detect_format, iter_rows, open_writer
from datamill.core.state import StateDB
from datamill.errors import CacheLockedError, ConfigError, InputFileError

log = logging.getLogger(__name__)


def read_committed_rows(
    state: StateDB, path: Path, fmt: str, index: int, limit: int | None = None
) -> Iterator[Row]:
    """The rows step ``index`` has committed, in order (at most ``limit``).

    A step file may end with a batch that a running (or killed) process appended but never
    committed; that batch is not part of the result, so only the committed count is read.
    The count is taken now: the iterator needs no open ``state``.
    """
    committed = state.load_position(index).out_rows
    if limit is not None:
        committed = min(committed, limit)
    if committed <= 0:
        return iter(())
    return itertools.islice(iter_rows(path, fmt), committed)


@dataclass
class StepCall:
    """One recorded ``op.run(storage.step(), **call)``."""

    operator: Any
    call: dict[str, Any]


@dataclass
class StepRef:
    """What ``storage.step()`` hands an operator: attaching records the step."""

    storage: BatchedFileStorage
    index: int
    attached: bool = field(default=False)

    def attach(self, operator: Any, call: dict[str, Any]) -> None:
        if self.attached:
            raise ConfigError("one storage.step() was passed to two operators; call storage.step() for each")
        self.attached = True
        self.storage.attach(operator, call)


class BatchedFileStorage:
    """File-backed storage for a batched pipeline.

    ``first_entry_file_name`` is the input, streamed and resumed where the last commit ended:

    - a ``.jsonl``, ``.csv`` or ``.parquet`` file (by extension; ``.json`` holding JSON lines
      or a JSON array of objects), or ``.jsonl.gz`` / ``.jsonl.zst``;
    - a folder of Parquet files, or a folder written by ``Dataset.save_to_disk``;
    - ``"hf:NAME[:CONFIG][@SPLIT]"``: a Hugging Face dataset through ``datasets.load_dataset``
      (hub name or local dataset folder; split ``train`` by default);
    - a ``datasets.Dataset`` / ``IterableDataset``, a pandas ``DataFrame`` or a list of dicts.

    A changed input (content, or a dataset's fingerprint) marks the pipeline's steps stale;
    see ``datamill.core.inputs``. ``cache_type`` is the format of the step files (``jsonl``,
    ``csv`` or ``parquet``; a Parquet step is a directory of parts, one per batch).
    """

    def __init__(
        self,
        first_entry_file_name: str | os.PathLike[str] | Any,
        cache_path: str = "./cache",
        file_name_prefix: str = "datamill_cache",
        cache_type: str = "jsonl",
    ) -> None:
        if cache_type not in FORMATS:
            raise ConfigError(f"cache_type {cache_type!r} is not one of {', '.join(FORMATS)}")
        self.first_entry_file_name = first_entry_file_name
        source = resolve_input(first_entry_file_name)
        self.input_path: Path | InputSource
        if source is None:
            self.input_path = Path(first_entry_file_name)
            self.input_format = detect_format(self.input_path)
        else:
            self.input_path, self.input_format = source, source.fmt
        self.cache_path = Path(cache_path)
        self.file_name_prefix = file_name_prefix
        self.cache_type = cache_type
        self._recording: list[StepCall] | None = None

    # --- tracing ----------------------------------------------------------------------

    def step(self) -> StepRef:
        """The handle for the next operator of ``forward()``."""
        if self._recording is None:
            raise ConfigError(
                "storage.step() was called outside compile()/forward(): call pipeline.compile() "
                "and pipeline.forward(...), not the operators directly"
            )
        return StepRef(self, len(self._recording))

    def attach(self, operator: Any, call: dict[str, Any]) -> None:
        if self._recording is None:
            raise ConfigError("operators can only be attached while the pipeline is being compiled")
        self._recording.append(StepCall(operator, dict(call)))

    def begin_trace(self) -> None:
        self._recording = []

    def end_trace(self) -> list[StepCall]:
        calls, self._recording = self._recording or [], None
        return calls

    # --- paths ------------------------------------------------------------------------

    def step_path(self, index: int) -> Path:
        """The output file of operator ``index`` (0-based), named ``{prefix}_step{index+1}``."""
        return self.cache_path / f"{self.file_name_prefix}_step{index + 1}.{self.cache_type}"

    def step_input(self, index: int) -> tuple[Path | InputSource, str]:
        if index == 0:
            return self.input_path, self.input_format
        return self.step_path(index - 1), self.cache_type

    @property
    def state_path(self) -> Path:
        return self.cache_path / f"{self.file_name_prefix}.state.db"

    @property
    def lock_path(self) -> Path:
        return self.cache_path / f"{self.file_name_prefix}.lock"

    @property
    def log_path(self) -> Path:
        return self.cache_path / f"{self.file_name_prefix}.log"

    def iter_step_rows(self, index: int) -> Iterator[Row]:
        """The committed rows of step ``index`` (read-only: works while a run is going)."""
        path = self.step_path(index)
        if not path.exists():
            raise InputFileError(f"{path} does not exist yet: step {index} has not run; call forward() first")
        state = StateDB.open_readonly(self.state_path)
        try:
            return read_committed_rows(state, path, self.cache_type, index)
        finally:
            state.close()

    def drop_uncommitted(self, steps: int) -> None:
        """Cut from the first ``steps`` step files what a stopped run appended after its last
        commit, so that the files hold committed rows only (the next run would cut it too).

        Skipped, with a warning, while a run holds the cache: its batches being committed are
        not to be cut.
        """
        if not self.state_path.is_file():
            return
        lock = CacheLock(self.lock_path)
        try:
            lock.acquire()
        except CacheLockedError:
            log.warning(
                "a run is using %s: its step files may end with batches not yet committed", self.cache_path
            )
            return
        try:
            state = StateDB.open_readonly(self.state_path)
            try:
                positions = {index: state.load_position(index).out_position for index in range(steps)}
            finally:
                state.close()
            for index, position in positions.items():
                path = self.step_path(index)
                if path.exists():
                    open_writer(path, self.cache_type, position).close()
        finally:
            lock.release()
