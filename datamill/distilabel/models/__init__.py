"""distilabel's ``distilabel.models`` path (``.models.llms`` too)."""

from __future__ import annotations

from datamill.distilabel.llms import LLM, AnthropicLLM, OpenAILLM

__all__ = ["LLM", "AnthropicLLM", "OpenAILLM"]
