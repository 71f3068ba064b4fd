"""Generate answers, have a model judge them, keep the good ones: generate → judge → filter.

Run against the bundled simulator (no account needed)::

    python examples/generate_judge_filter.py

Point it at a real OpenAI-compatible endpoint (the judge asks for JSON via ``response_format``)::

    export DATAMILL_API_BASE=https://api.openai.com/v1 OPENAI_API_KEY=sk-... DATAMILL_MODEL=gpt-4o-mini
    python examples/generate_judge_filter.py

or at Anthropic (the judge's schema becomes a forced tool call)::

    export DATAMILL_PROVIDER=anthropic DATAMILL_API_BASE=https://api.anthropic.com ANTHROPIC_API_KEY=...
    python examples/generate_judge_filter.py

``DATAMILL_POLL_SECONDS=5`` runs both LLM steps through the provider's Batch API instead (about
half the price), polling every 5 seconds until the jobs end. A judge reply that is not a score
in the schema is asked again (a resubmitted request in Batch API mode), twice at most; a row
whose judge never answers in the schema fails and is reported (``datamill status``), up to
``allowed_failure_fraction`` of the input.

Rows scored below ``MIN_SCORE`` leave the last step's file; the state database counts them
(``datamill status`` shows "score below 6"). Raising ``MIN_SCORE`` and rerunning reruns only the
filter: answers and scores come from the cache.
"""

from __future__ import annotations

import os

from example_support import api_base, cache_dir, model_name, provider, show, write_input

from datamill import (
    AnthropicLLMServing,
    APILLMServing_request,
    BatchedFileStorage,
    BatchedPipelineABC,
    LLMScorer,
    PromptTemplateGenerator,
    ScoreFilter,
)

MIN_SCORE = 6
TOPICS = ["photosynthesis", "compound interest", "the water cycle", "binary search", "plate tectonics"]
LEVELS = ["a ten-year-old", "a university student", "a busy executive", "a retired engineer"]


class AnswerJudgeFilter(BatchedPipelineABC):
    allowed_failure_fraction = 0.25

    def __init__(self, api_url: str) -> None:
        super().__init__()
        cache = cache_dir("judge")
        rows = [
            {"id": i, "topic": t, "audience": a}
            for i, (t, a) in enumerate((t, a) for t in TOPICS for a in LEVELS)
        ]
        self.storage = BatchedFileStorage(
            str(write_input(cache, "questions.jsonl", rows)), cache_path=str(cache), file_name_prefix="judge"
        )
        poll = os.environ.get("DATAMILL_POLL_SECONDS")
        serving = AnthropicLLMServing if provider() == "anthropic" else APILLMServing_request
        self.llm = serving(
            api_url=api_url,
            model_name=model_name(),
            max_workers=16,
            use_offline_batch_generation=poll is not None,
            offline_batch_generation_block_until_done=float(poll) if poll else None,
        )
        self.explain = PromptTemplateGenerator(
            self.llm,
            template="Explain {topic} to {audience} in three sentences.",
            system_prompt="Be accurate.",
        )
        self.judge = LLMScorer(
            self.llm,
            criteria="Accurate, and pitched at the audience named in the request.",
            min_score=1,
            max_score=10,
        )
        self.keep = ScoreFilter(min_score=MIN_SCORE)

    def forward(self) -> None:
        self.explain.run(self.storage.step(), output_key="explanation")
        self.judge.run(self.storage.step(), input_key="explanation")
        self.keep.run(self.storage.step(), input_key="score")


def main() -> None:
    with api_base() as url:
        pipeline = AnswerJudgeFilter(url)
        summary = pipeline.forward(batch_size=8)
        show(summary, list(pipeline.rows()), ["topic", "audience", "score", "rationale"])


if __name__ == "__main__":
    main()
