"""datamill: batched, resumable LLM data-generation pipelines.

``import datamill`` stays light: pandas, pyarrow, torch, vllm and ray are imported only by the
code paths that need them. The public names below are resolved lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datamill._lazy import lazy_exports
from datamill.pipeline.progress import ProgressSink, set_default_progress

__version__ = "0.1.0"

#: Operators resolve through ``datamill.operators``, which knows each one's module.
_OPERATORS = (
    "PromptedGenerator",
    "PromptTemplateGenerator",
    "ChatGenerator",
    "StructuredGenerator",
    "LLMScorer",
    "ScoreFilter",
    "LengthFilter",
    "RegexFilter",
    "LanguageFilter",
    "LLMLanguageFilter",
    "MetaSampleEvaluator",
    "MapOperator",
    "FilterOperator",
    "ExpandOperator",
    "ExactDeduplicator",
    "MinHashDeduplicator",
    "Dropped",
    "Failed",
    "Operator",
    "LLMOperator",
)

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(_OPERATORS, "datamill.operators"),
    "BatchedPipelineABC": "datamill.pipeline.base",
    "BatchedFileStorage": "datamill.pipeline.storage",
    "RunSummary": "datamill.pipeline.summary",
    "APILLMServing_request": "datamill.serving.openai_compat",
    "DatamillError": "datamill.errors",
    "OfflineBatchGenerationNotFinished": "datamill.errors",
    "RowsFailedError": "datamill.errors",
    "AnthropicLLMServing": "datamill.serving.anthropic",
    "LocalModelLLMServing_transformers": "datamill.serving.local_transformers",
    "LocalModelLLMServing_vllm": "datamill.serving.local_vllm",
    "BudgetExceededError": "datamill.errors",
    "PipelineEstimate": "datamill.pipeline.estimate",
    "RayExecutor": "datamill.pipeline.ray_executor",
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
    "LLMLanguageFilter",
    "LLMScorer",
    "LanguageFilter",
    "LengthFilter",
    "LocalModelLLMServing_transformers",
    "LocalModelLLMServing_vllm",
    "MapOperator",
    "MetaSampleEvaluator",
    "MinHashDeduplicator",
    "OfflineBatchGenerationNotFinished",
    "Operator",
    "PipelineEstimate",
    "PromptTemplateGenerator",
    "PromptedGenerator",
    "RayExecutor",
    "RegexFilter",
    "RowsFailedError",
    "RunSummary",
    "ScoreFilter",
    "StructuredGenerator",
    "response_format_for",
    "validate_reply",
    "__version__",
]

__getattr__ = lazy_exports(globals(), _EXPORTS)


def _console_progress() -> ProgressSink:
    """``forward()``'s default display (rich is imported only when a run starts)."""
    from datamill.ui.console import ConsoleProgress

    return ConsoleProgress()


set_default_progress(_console_progress)


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
    from datamill.operators.llm_language import LLMLanguageFilter
    from datamill.operators.meta_eval import MetaSampleEvaluator
    from datamill.operators.structured import StructuredGenerator
    from datamill.operators.templated import PromptTemplateGenerator
    from datamill.pipeline.base import BatchedPipelineABC
    from datamill.pipeline.estimate import PipelineEstimate
    from datamill.pipeline.ray_executor import RayExecutor
    from datamill.pipeline.storage import BatchedFileStorage
    from datamill.pipeline.summary import RunSummary
    from datamill.serving.anthropic import AnthropicLLMServing
    from datamill.serving.local_transformers import LocalModelLLMServing_transformers
    from datamill.serving.local_vllm import LocalModelLLMServing_vllm
    from datamill.serving.openai_compat import APILLMServing_request
    from datamill.serving.structured import response_format_for, validate_reply
