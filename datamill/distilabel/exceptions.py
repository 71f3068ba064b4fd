"""distilabel's exception names, for code that catches them.

``DistilabelOfflineBatchGenerationNotFinishedException`` is datamill's
``OfflineBatchGenerationNotFinished``: offline batch jobs were submitted or are still running, and
every job id is recorded, so rerunning collects them. ``Pipeline.run`` handles it itself (it
returns an empty ``Distiset`` with ``pending_jobs``); a datamill pipeline raises it.
"""

from __future__ import annotations

from datamill.errors import OfflineBatchGenerationNotFinished

DistilabelOfflineBatchGenerationNotFinishedException = OfflineBatchGenerationNotFinished

__all__ = ["DistilabelOfflineBatchGenerationNotFinishedException"]
