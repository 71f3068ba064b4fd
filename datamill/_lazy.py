"""Lazy package exports: a public name's module is imported on first access, not at import time.

This is how ``import datamill`` stays light (no pandas, numpy, aiohttp, torch, ...) while
``datamill.PromptedGenerator`` still works.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(module_globals: dict[str, Any], exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` resolving ``name`` from the module ``exports[name]``.

    Pass the package's ``globals()``: a resolved name is stored there, so later look-ups are
    plain attribute reads. Unknown names raise ``AttributeError`` as a module would.
    """
    package = module_globals["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        module_globals[name] = value
        return value

    return __getattr__
