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
    "PromptTemplateGenerator": "datamill.operators.templated",
    "ChatGenerator": "datamill.operators.chat",
    "StructuredGenerator": "datamill.operators.structured",
    "LLMScorer": "datamill.operators.judge",
    "ScoreFilter": "datamill.operators.filters",
    "LengthFilter": "datamill.operators.filters",
    "RegexFilter": "datamill.operators.filters",
    "LanguageFilter": "datamill.operators.filters",
    "MapOperator": "datamill.operators.functional",
    "FilterOperator": "datamill.operators.functional",
    "ExpandOperator": "datamill.operators.functional",
    "ExactDeduplicator": "datamill.operators.dedup",
    "MinHashDeduplicator": "datamill.operators.dedup",
    "Dropped": "datamill.operators.base",
    "Failed": "datamill.operators.base",
    "Operator": "datamill.operators.base",
    "LLMOperator": "datamill.operators.base",
    "DatamillError": "datamill.errors",
    "OfflineBatchGenerationNotFinished": "datamill.errors",
    "RowsFailedError": "datamill.errors",
    "AnthropicLLMServing": "datamill.serving.anthropic",
    "LocalModelLLMServing_transformers": "datamill.serving.local_transformers",
    "LocalModelLLMServing_vllm": "datamill.serving.local_vllm",
    "BudgetExceededError": "datamill.errors",
    "PipelineEstimate": "datamill.pipeline.estimate",
    "validate_reply": "datamill.serving.structured",
    "response_format_for": "datamill.serving.structured",
}

__all__ = [
    "APILLMServing_request",
    "AnthropicLLMServing",
    "BatchedFileStorage",
    "BatchedPipelineABC",
    "BudgetExceededError",
    "ChatGenerator",
    "DatamillError",
    "Dropped",
    "ExactDeduplicator",
    "ExpandOperator",
    "Failed",
    "FilterOperator",
    "LLMOperator",
    "LLMScorer",
    "LanguageFilter",
    "LengthFilter",
    "LocalModelLLMServing_transformers",
    "LocalModelLLMServing_vllm",
    "MapOperator",
    "MinHashDeduplicator",
    "OfflineBatchGenerationNotFinished",
    "Operator",
    "PipelineEstimate",
    "PromptTemplateGenerator",
    "PromptedGenerator",
    "RegexFilter",
    "RowsFailedError",
    "RunSummary",
    "ScoreFilter",
    "StructuredGenerator",
    "response_format_for",
    "validate_reply",
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
    from datamill.errors import (
        BudgetExceededError,
        DatamillError,
        OfflineBatchGenerationNotFinished,
        RowsFailedError,
    )
    from datamill.operators.base import Dropped, Failed, LLMOperator, Operator
    from datamill.operators.chat import ChatGenerator
    from datamill.operators.dedup import ExactDeduplicator, MinHashDeduplicator
    from datamill.operators.filters import LanguageFilter, LengthFilter, RegexFilter, ScoreFilter
    from datamill.operators.functional import ExpandOperator, FilterOperator, MapOperator
    from datamill.operators.generate import PromptedGenerator
    from datamill.operators.judge import LLMScorer
    from datamill.operators.structured import StructuredGenerator
    from datamill.operators.templated import PromptTemplateGenerator
    from datamill.pipeline.base import BatchedPipelineABC
    from datamill.pipeline.estimate import PipelineEstimate
    from datamill.pipeline.storage import BatchedFileStorage
    from datamill.pipeline.summary import RunSummary
    from datamill.serving.anthropic import AnthropicLLMServing
    from datamill.serving.local_transformers import LocalModelLLMServing_transformers
    from datamill.serving.local_vllm import LocalModelLLMServing_vllm
    from datamill.serving.openai_compat import APILLMServing_request
    from datamill.serving.structured import response_format_for, validate_reply
