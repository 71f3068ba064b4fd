"""Offline batch generation: running a step's requests through a provider's Batch API.

``prepare_offline_step`` (``engine.py``) is the entry point the pipeline runner calls;
``provider.py`` is what a provider's Batch API offers it, implemented beside each online serving
(``OpenAIBatchProvider`` in ``datamill.serving.openai_compat``, ``AnthropicBatchProvider`` in
``datamill.serving.anthropic``); ``store.py`` holds the job records in the state database.
"""

from __future__ import annotations

from datamill.serving.offline.engine import MAX_ATTEMPTS, OfflineStepResult, prepare_offline_step
from datamill.serving.offline.provider import BatchProvider, JobInfo, LineResult

__all__ = [
    "MAX_ATTEMPTS",
    "BatchProvider",
    "JobInfo",
    "LineResult",
    "OfflineStepResult",
    "prepare_offline_step",
]
