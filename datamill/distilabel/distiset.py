"""``Distiset``: what ``Pipeline.run`` returns, shaped like distilabel's.

A dict from configuration name (``"default"`` for a pipeline with one leaf step, else each
leaf step's name) to a ``datasets.DatasetDict`` holding one ``"train"`` split read from that
leaf's step file. Saving and publishing are ``datasets``' own (``save_to_disk`` per
configuration, ``push_to_hub`` with ``config_name``); datamill adds nothing to the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamill.distilabel.loaders import import_datasets


class Distiset(dict):
    """``{config name: DatasetDict({"train": Dataset})}``; ``pending_jobs`` while offline jobs run."""

    def __init__(
        self, configs: dict[str, Any] | None = None, *, pending_jobs: list[dict[str, Any]] | None = None
    ):
        super().__init__(configs or {})
        self.pending_jobs = list(pending_jobs or [])

    def save_to_disk(self, distiset_path: str | Path, *, max_shard_size: str | int | None = None) -> None:
        """Write each configuration to ``{distiset_path}/{config}`` with ``DatasetDict.save_to_disk``."""
        root = Path(distiset_path)
        for name, dataset_dict in self.items():
            dataset_dict.save_to_disk(str(root / name), max_shard_size=max_shard_size)

    @classmethod
    def load_from_disk(cls, distiset_path: str | Path) -> Distiset:
        """Read back what ``save_to_disk`` wrote (one ``DatasetDict`` per sub-directory)."""
        datasets = import_datasets()
        root = Path(distiset_path)
        return cls({p.name: datasets.load_from_disk(str(p)) for p in sorted(root.iterdir()) if p.is_dir()})

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str | None = None,
    ) -> None:
        """Upload each configuration to the Hub repository ``repo_id`` (``config_name`` = its key)."""
        for name, dataset_dict in self.items():
            dataset_dict.push_to_hub(
                repo_id, config_name=name, private=private, token=token, commit_message=commit_message
            )

    def train_test_split(
        self, train_size: float, *, shuffle: bool = True, seed: int | None = None
    ) -> Distiset:
        """Split each configuration's ``train`` into ``train`` and ``test`` (in place, as distilabel)."""
        for name, dataset_dict in list(self.items()):
            self[name] = dataset_dict["train"].train_test_split(
                train_size=train_size, shuffle=shuffle, seed=seed
            )
        return self

    def __repr__(self) -> str:
        if not self and self.pending_jobs:
            return f"Distiset(pending offline batch jobs: {len(self.pending_jobs)})"
        return f"Distiset({dict.__repr__(self)})"


def leaf_dataset(path: Path, cache_dir: Path) -> Any:
    """``DatasetDict({"train": ...})`` of a step file (JSONL), cached by ``datasets`` in ``cache_dir``."""
    datasets = import_datasets()
    if path.stat().st_size == 0:
        train = datasets.Dataset.from_list([])
    else:
        train = datasets.Dataset.from_json(str(path), cache_dir=str(cache_dir))
    return datasets.DatasetDict({"train": train})
