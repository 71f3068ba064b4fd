"""Offline batch generation: running a step's requests through a provider's Batch API.

``prepare_offline_step`` (``engine.py``) is the entry point the pipeline runner calls;
``OpenAIBatchProvider`` and ``AnthropicBatchProvider`` speak the two Batch APIs; ``store.py``
holds the job records in the state database.
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
