"""Deduplicate prompts before paying for them: exact, then near duplicates, then generate.

Prompts that differ only in case or spacing are removed first (exact, normalised), then
near-duplicates (a word changed) with MinHash, all before any model call, so they cost nothing.
Both deduplicators see the whole step input before deciding, keep the first occurrence, and
decide the same way on every resume.

Run against the bundled simulator (no account needed)::

    python examples/generate_then_dedup.py

Point it at a real OpenAI-compatible endpoint::

    export DATAMILL_API_BASE=https://api.openai.com/v1 OPENAI_API_KEY=sk-... DATAMILL_MODEL=gpt-4o-mini
    python examples/generate_then_dedup.py

Needs numpy (``pip install 'datamill[dedup]'``).
"""

from __future__ import annotations

from example_support import api_base, cache_dir, model_name, show, write_input

from datamill import (
    APILLMServing_request,
    BatchedFileStorage,
    BatchedPipelineABC,
    ExactDeduplicator,
    MinHashDeduplicator,
    PromptedGenerator,
)

BASE_PROMPTS = [
    "Write a short product description for a stainless steel water bottle that keeps drinks cold all day",
    "Write a short product description for a lightweight hiking backpack with a rain cover and hip belt",
    "Write a short product description for a wireless mechanical keyboard with hot swappable switches",
    "Write a short product description for a cast iron skillet that comes pre seasoned and oven safe",
]


def prompts() -> list[dict]:
    rows = []
    for i, prompt in enumerate(BASE_PROMPTS * 3):
        variant = i // len(BASE_PROMPTS)
        if variant == 1:
            prompt = prompt.replace("short", "brief")  # a near-duplicate
        elif variant == 2:
            prompt = prompt.upper()  # the same words, shouted
        rows.append({"id": i, "prompt": prompt})
    return rows


class DedupGenerate(BatchedPipelineABC):
    def __init__(self, api_url: str) -> None:
        super().__init__()
        cache = cache_dir("dedup")
        self.storage = BatchedFileStorage(
            str(write_input(cache, "prompts.jsonl", prompts())),
            cache_path=str(cache),
            file_name_prefix="dedup",
        )
        self.llm = APILLMServing_request(api_url=api_url, model_name=model_name(), max_workers=16)
        self.exact_duplicates = ExactDeduplicator(normalize=True)
        self.near_duplicates = MinHashDeduplicator(threshold=0.5, num_perm=128, ngram=2)
        self.write = PromptedGenerator(self.llm, system_prompt="You write crisp marketing copy.")

    def forward(self) -> None:
        self.exact_duplicates.run(self.storage.step(), input_key="prompt")
        self.near_duplicates.run(self.storage.step(), input_key="prompt")
        self.write.run(self.storage.step(), input_key="prompt", output_key="description")


def main() -> None:
    with api_base() as url:
        pipeline = DedupGenerate(url)
        summary = pipeline.forward(batch_size=4)
        show(summary, list(pipeline.rows()), ["id", "description"])


if __name__ == "__main__":
    main()
