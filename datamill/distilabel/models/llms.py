"""distilabel's ``distilabel.models.llms`` path."""

from __future__ import annotations

from datamill.distilabel.llms import LLM, AnthropicLLM, OpenAILLM

__all__ = ["LLM", "AnthropicLLM", "OpenAILLM"]
