"""Translate through the provider's Batch API (about half the price, results within 24 hours).

With ``use_offline_batch_generation=True`` the step's requests go to the Batch API instead of
the online endpoint: datamill uploads them, records every job id in the state database before
doing anything else, and polls. Killed while waiting, the same command picks the same jobs up
again instead of submitting twice.

Run against the bundled simulator (no account needed; its batches finish in a second)::

    python examples/offline_batch.py

Point it at OpenAI's Batch API::

    export DATAMILL_API_BASE=https://api.openai.com/v1 OPENAI_API_KEY=sk-... DATAMILL_MODEL=gpt-4o-mini
    DATAMILL_POLL_SECONDS=none python examples/offline_batch.py   # submit, then exit with status 75
    python examples/offline_batch.py                              # later: collect (or keep polling)

``DATAMILL_POLL_SECONDS`` is how often to poll while blocking until the jobs end (1 by
default); ``none`` submits and exits, and rerunning the command collects the results.
"""

from __future__ import annotations

import os
import sys

from example_support import api_base, cache_dir, model_name, show

from datamill import (
    APILLMServing_request,
    BatchedFileStorage,
    BatchedPipelineABC,
    OfflineBatchGenerationNotFinished,
    PromptTemplateGenerator,
)
from datamill.demo.translate import sample_path


def poll_seconds() -> float | None:
    value = os.environ.get("DATAMILL_POLL_SECONDS", "1")
    return None if value.lower() == "none" else float(value)


class OfflineTranslate(BatchedPipelineABC):
    def __init__(self, api_url: str) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(sample_path()), cache_path=str(cache_dir("offline")), file_name_prefix="offline"
        )
        self.llm = APILLMServing_request(
            api_url=api_url,
            model_name=model_name(),
            use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=poll_seconds(),
        )
        self.to_french = PromptTemplateGenerator(self.llm, template="Translate into French:\n\n{raw_content}")

    def forward(self) -> None:
        self.to_french.run(self.storage.step(), output_key="content_fr")


def main() -> int:
    with api_base() as url:
        pipeline = OfflineTranslate(url)
        try:
            summary = pipeline.forward(batch_size=50)
        except OfflineBatchGenerationNotFinished as waiting:
            print(
                f"{len(waiting.jobs)} batch job(s) submitted or running; run the same command again to collect"
            )
            return waiting.exit_code
        show(summary, list(pipeline.rows()), ["id", "content_fr"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
