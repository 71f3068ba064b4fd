"""distilabel's ``distilabel.steps`` path: the loaders (tasks are in ``.tasks``)."""

from __future__ import annotations

from datamill.distilabel.base import Step
from datamill.distilabel.loaders import (
    GeneratorStep,
    LoadDataFromDicts,
    LoadDataFromFileSystem,
    LoadDataFromHub,
)

__all__ = ["GeneratorStep", "LoadDataFromDicts", "LoadDataFromFileSystem", "LoadDataFromHub", "Step"]
