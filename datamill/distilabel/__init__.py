"""A distilabel-style front over datamill's engine.

Pipelines written for distilabel's text generation run by changing their imports from
``distilabel`` to ``datamill.distilabel`` (the module paths mirror distilabel's:
``datamill.distilabel.pipeline``, ``.steps``, ``.steps.tasks``, ``.models``, ``.llms``,
``.distiset``, ``.exceptions``). Underneath, each chain of steps is a datamill pipeline: the same
batches, commits, request cache, offline batch jobs and resume after a kill. What is covered and
what is not: docs/porting.md.

Names resolve lazily, so ``import datamill.distilabel`` loads neither ``datasets`` nor the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datamill._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Pipeline": "datamill.distilabel.pipeline",
    "Step": "datamill.distilabel.base",
    "GeneratorStep": "datamill.distilabel.loaders",
    "LoadDataFromDicts": "datamill.distilabel.loaders",
    "LoadDataFromHub": "datamill.distilabel.loaders",
    "LoadDataFromFileSystem": "datamill.distilabel.loaders",
    "TextGeneration": "datamill.distilabel.text_generation",
    "LLM": "datamill.distilabel.llms",
    "OpenAILLM": "datamill.distilabel.llms",
    "AnthropicLLM": "datamill.distilabel.llms",
    "Distiset": "datamill.distilabel.distiset",
    "DistilabelOfflineBatchGenerationNotFinishedException": "datamill.distilabel.exceptions",
}

__all__ = [
    "AnthropicLLM",
    "DistilabelOfflineBatchGenerationNotFinishedException",
    "Distiset",
    "GeneratorStep",
    "LLM",
    "LoadDataFromDicts",
    "LoadDataFromFileSystem",
    "LoadDataFromHub",
    "OpenAILLM",
    "Pipeline",
    "Step",
    "TextGeneration",
]

__getattr__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from datamill.distilabel.base import Step
    from datamill.distilabel.distiset import Distiset
    from datamill.distilabel.exceptions import DistilabelOfflineBatchGenerationNotFinishedException
    from datamill.distilabel.llms import LLM, AnthropicLLM, OpenAILLM
    from datamill.distilabel.loaders import (
        GeneratorStep,
        LoadDataFromDicts,
        LoadDataFromFileSystem,
        LoadDataFromHub,
    )
    from datamill.distilabel.pipeline import Pipeline
    from datamill.distilabel.text_generation import TextGeneration
