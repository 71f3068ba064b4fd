"""The translation pipeline that ``datamill demo`` runs: English → Chinese → French → German.

Run the same pipeline on a real OpenAI-compatible endpoint by pointing it there::

    export OPENAI_API_KEY=sk-...
    datamill demo --api-url https://api.openai.com/v1/chat/completions --model gpt-4o-mini

or copy this file, change ``api_url``/``model_name``, and run it with ``datamill run``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from datamill.operators.generate import PromptedGenerator
from datamill.pipeline.base import BatchedPipelineABC
from datamill.pipeline.storage import BatchedFileStorage
from datamill.serving.openai_compat import APILLMServing_request


def sample_path() -> Path:
    """The bundled 200-row English sample (``id``, ``raw_content``)."""
    return Path(str(resources.files("datamill") / "data" / "sample_translate.jsonl"))


class TranslatePipeline(BatchedPipelineABC):
    def __init__(
        self,
        api_url: str,
        model_name: str = "gpt-4o-mini",
        input_path: str | None = None,
        cache_path: str = "./demo_cache",
        max_workers: int = 30,
    ) -> None:
        super().__init__()
        self.storage = BatchedFileStorage(
            first_entry_file_name=input_path or str(sample_path()),
            cache_path=cache_path,
            file_name_prefix="translate",
            cache_type="jsonl",
        )
        self.llm = APILLMServing_request(api_url=api_url, model_name=model_name, max_workers=max_workers)
        self.to_chinese = PromptedGenerator(llm_serving=self.llm, system_prompt="Translate into Chinese:")
        self.to_french = PromptedGenerator(llm_serving=self.llm, system_prompt="Translate into French:")
        self.to_german = PromptedGenerator(llm_serving=self.llm, system_prompt="Translate into German:")

    def forward(self) -> None:
        self.to_chinese.run(self.storage.step(), input_key="raw_content", output_key="content_cn")
        self.to_french.run(self.storage.step(), input_key="raw_content", output_key="content_fr")
        self.to_german.run(self.storage.step(), input_key="raw_content", output_key="content_de")
