"""``Pipeline``: distilabel's pipeline object, run by datamill's engine.

``with Pipeline(name=..., cache_dir=...) as pipeline:`` collects the steps created inside it and
the ``>>`` edges between them. ``pipeline.run(parameters=..., use_cache=True)`` then:

1. applies the runtime parameters (a step or parameter name that does not exist is an error);
2. writes the generator step's rows to the cache directory (``loaders.loader_input_file``);
3. splits the graph into chains: a chain ends where a step feeds several, and each chain is one
   datamill ``BatchedPipelineABC`` over one ``BatchedFileStorage`` whose file prefix is the
   chain's first step; a chain after a fork reads its parent chain's last step file;
4. runs the chains in order with ``forward(batch_size=<first step's input_batch_size>,
   resume_from_last=use_cache)``: batches, commits, the request cache, offline jobs and resume
   after a kill are the engine's, exactly as for a pipeline written against ``datamill``;
5. returns a ``Distiset`` of the leaf steps' outputs. While offline batch jobs are pending (or
   polling was stopped with Ctrl+C) it logs which, and returns an empty ``Distiset`` whose
   ``pending_jobs`` lists them, as distilabel does; rerunning the script collects them.

The cache directory is ``{cache_dir}/{name}``, ``cache_dir`` defaulting to
``DISTILABEL_CACHE_DIR`` or ``~/.cache/datamill/distilabel``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from datamill.distilabel.base import CURRENT_PIPELINE, Step, check_name
from datamill.distilabel.distiset import Distiset, leaf_dataset
from datamill.distilabel.loaders import GeneratorStep, loader_input_file
from datamill.distilabel.text_generation import TextGeneration
from datamill.errors import ConfigError, OfflineBatchGenerationNotFinished
from datamill.pipeline.base import BatchedPipelineABC
from datamill.pipeline.storage import BatchedFileStorage

log = logging.getLogger("datamill.distilabel")


class Pipeline:
    """A graph of steps: one generator step, then ``TextGeneration`` steps in chains or a tree."""

    def __init__(
        self, name: str | None = None, description: str | None = None, cache_dir: str | Path | None = None
    ) -> None:
        self.name = check_name(name, "pipeline") if name else None
        self.description = description
        self.cache_dir = cache_dir
        self.steps: dict[str, Step] = {}
        self.successors: dict[str, list[str]] = {}
        self.predecessors: dict[str, list[str]] = {}
        self._token: Any = None

    def __enter__(self) -> Pipeline:
        self._token = CURRENT_PIPELINE.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        CURRENT_PIPELINE.reset(self._token)
        self._token = None

    # --- building -------------------------------------------------------------------------

    def unique_step_name(self, base: str) -> str:
        """``{base}_{k}`` with the smallest k not taken (``text_generation_0``)."""
        index = 0
        while f"{base}_{index}" in self.steps:
            index += 1
        return f"{base}_{index}"

    def add_step(self, step: Step) -> None:
        if step.name in self.steps:
            raise ConfigError(f"the pipeline already has a step named {step.name!r}")
        self.steps[step.name] = step
        self.successors[step.name] = []
        self.predecessors[step.name] = []

    def add_edge(self, source: Step, target: Step) -> None:
        for step in (source, target):
            if self.steps.get(step.name) is not step:
                raise ConfigError(
                    f"step {step.name!r} belongs to another pipeline; connect steps of one pipeline"
                )
        if target.name not in self.successors[source.name]:
            self.successors[source.name].append(target.name)
            self.predecessors[target.name].append(source.name)

    @property
    def pipeline_name(self) -> str:
        """The given name, or distilabel's default: ``pipeline_`` and the step names."""
        return self.name or "_".join(["pipeline", *self.steps])

    def cache_path(self) -> Path:
        base = (
            self.cache_dir
            or os.environ.get("DISTILABEL_CACHE_DIR")
            or Path.home() / ".cache/datamill/distilabel"
        )
        return Path(base).expanduser() / self.pipeline_name

    # --- running --------------------------------------------------------------------------

    def run(self, parameters: dict[str, dict[str, Any]] | None = None, use_cache: bool = True) -> Distiset:
        """Run every step over every row; see the module docstring for what happens on a rerun."""
        self.apply_parameters(parameters or {})
        root, chains = self.plan_chains()
        cache = self.cache_path()
        source = loader_input_file(root, cache)
        servings: dict[int, Any] = {}
        done: dict[str, Path] = {}
        for chain in chains:
            parent = self.predecessors[chain[0].name][0]
            chain_input = source if parent == root.name else done[parent]
            for step in chain:
                if id(step.llm) not in servings:
                    servings[id(step.llm)] = step.llm.build_serving()
            engine = ChainPipeline(chain_input, cache, chain, servings)
            try:
                engine.forward(batch_size=chain[0].input_batch_size, resume_from_last=use_cache)
            except OfflineBatchGenerationNotFinished as pending:
                log.warning("%s", pending)
                return Distiset(pending_jobs=pending.jobs)
            done[chain[-1].name] = engine.step_paths()[-1]
        leaves = [chain[-1].name for chain in chains if not self.successors[chain[-1].name]]
        return Distiset(
            {
                ("default" if len(leaves) == 1 else leaf): leaf_dataset(done[leaf], cache / "datasets")
                for leaf in leaves
            }
        )

    def apply_parameters(self, parameters: dict[str, dict[str, Any]]) -> None:
        unknown = sorted(set(parameters) - set(self.steps))
        if unknown:
            raise ConfigError(f"parameters name no step {unknown}; the steps are {list(self.steps)}")
        for name, values in parameters.items():
            if not isinstance(values, dict):
                raise ConfigError(f"parameters[{name!r}] must be a dict of that step's runtime parameters")
            self.steps[name].set_runtime_parameters(values)

    def plan_chains(self) -> tuple[GeneratorStep, list[list[TextGeneration]]]:
        """The generator step and the chains of tasks after it, parents before children."""
        roots = [step for name, step in self.steps.items() if not self.predecessors[name]]
        if len(roots) != 1 or not isinstance(roots[0], GeneratorStep):
            raise ConfigError(
                "the pipeline needs exactly one loader (LoadDataFromDicts, LoadDataFromHub, "
                f"LoadDataFromFileSystem) that every other step descends from; it starts at {roots}"
            )
        for name, step in self.steps.items():
            if step is roots[0]:
                continue
            if not isinstance(step, TextGeneration):
                raise ConfigError(f"step {name!r} ({type(step).__name__}) can only start the pipeline")
            if len(self.predecessors[name]) != 1:
                raise ConfigError(
                    f"step {name!r} receives rows from {self.predecessors[name]}; datamill runs chains "
                    "and forks, not steps fed by several others"
                )
        chains: list[list[TextGeneration]] = []
        pending = list(self.successors[roots[0].name])
        while pending:
            chain = [self.steps[pending.pop(0)]]
            while len(self.successors[chain[-1].name]) == 1:
                chain.append(self.steps[self.successors[chain[-1].name][0]])
            chains.append(chain)  # type: ignore[arg-type]
            pending.extend(self.successors[chain[-1].name])
        if not chains:
            raise ConfigError(f"the loader {roots[0].name!r} feeds no step: connect it with >>")
        return roots[0], chains


class ChainPipeline(BatchedPipelineABC):
    """One chain of tasks as a datamill pipeline, its files prefixed by the chain's first step."""

    def __init__(
        self, source: Path, cache: Path, chain: list[TextGeneration], servings: dict[int, Any]
    ) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(str(source), cache_path=str(cache), file_name_prefix=chain[0].name)
        self.operators = [step.to_operator(servings[id(step.llm)]) for step in chain]

    def forward(self) -> None:
        for operator in self.operators:
            operator.run(self.storage.step())
