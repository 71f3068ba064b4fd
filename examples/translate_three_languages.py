"""Translate English sentences into Chinese, French and German: three LLM steps, one column each.

Run against the bundled simulator (no account needed)::

    python examples/translate_three_languages.py

Point it at a real OpenAI-compatible endpoint::

    export DATAMILL_API_BASE=https://api.openai.com/v1 OPENAI_API_KEY=sk-... DATAMILL_MODEL=gpt-4o-mini
    python examples/translate_three_languages.py

Kill it at any time and run the same command again: it resumes after the last committed batch
and pays for no translation twice. The output is ``demo_cache/translate/translate_step3.jsonl``.
"""

from __future__ import annotations

from example_support import api_base, cache_dir, model_name, show

from datamill import APILLMServing_request, BatchedFileStorage, BatchedPipelineABC, PromptTemplateGenerator
from datamill.demo.translate import sample_path

LANGUAGES = {"content_cn": "Chinese", "content_fr": "French", "content_de": "German"}


class TranslatePipeline(BatchedPipelineABC):
    def __init__(self, api_url: str) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            str(sample_path()), cache_path=str(cache_dir("translate")), file_name_prefix="translate"
        )
        self.llm = APILLMServing_request(api_url=api_url, model_name=model_name(), max_workers=32)
        self.translators = {
            column: PromptTemplateGenerator(
                self.llm,
                template=f"Translate into {language}:\n\n{{raw_content}}",
                system_prompt="You translate.",
            )
            for column, language in LANGUAGES.items()
        }

    def forward(self) -> None:
        for column, translator in self.translators.items():
            translator.run(self.storage.step(), output_key=column)


def main() -> None:
    with api_base() as url:
        pipeline = TranslatePipeline(url)
        summary = pipeline.forward(batch_size=32)
        show(summary, list(pipeline.rows()), ["id", *LANGUAGES])


if __name__ == "__main__":
    main()
