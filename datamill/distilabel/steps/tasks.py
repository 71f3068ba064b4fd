"""distilabel's ``distilabel.steps.tasks`` path."""

from __future__ import annotations

from datamill.distilabel.text_generation import TextGeneration

__all__ = ["TextGeneration"]
