"""datamill: batched, resumable LLM data-generation pipelines.

``import datamill`` stays light: pandas, pyarrow, torch, vllm and ray are imported only by the
code paths that need them. The public names below are resolved lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "BatchedPipelineABC": "datamill.pipeline.base",
    "BatchedFileStorage": "datamill.pipeline.storage",
    "RunSummary": "datamill.pipeline.summary",
    "APILLMServing_request": "datamill.serving.openai_compat",
    "PromptedGenerator": "datamill.operators.generate",
    "Operator": "datamill.operators.base",
    "LLMOperator": "datamill.operators.base",
    "DatamillError": "datamill.errors",
    "OfflineBatchGenerationNotFinished": "datamill.errors",
    "RowsFailedError": "datamill.errors",
}

__all__ = [
    "APILLMServing_request",
    "BatchedFileStorage",
    "BatchedPipelineABC",
    "DatamillError",
    "LLMOperator",
    "OfflineBatchGenerationNotFinished",
    "Operator",
    "PromptedGenerator",
    "RowsFailedError",
    "RunSummary",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datamill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from datamill.errors import DatamillError, OfflineBatchGenerationNotFinished, RowsFailedError
    from datamill.operators.base import LLMOperator, Operator
    from datamill.operators.generate import PromptedGenerator
    from datamill.pipeline.base import BatchedPipelineABC
    from datamill.pipeline.storage import BatchedFileStorage
    from datamill.pipeline.summary import RunSummary
    from datamill.serving.openai_compat import APILLMServing_request
