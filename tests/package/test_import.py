"""``import datamill`` stays light: heavy backends load only on the code paths that use them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "pandas",
    "pyarrow",
    "numpy",
    "datasets",
    "huggingface_hub",
    "zstandard",
    "torch",
    "transformers",
    "vllm",
    "ray",
    "tiktoken",
    "aiohttp",
    "rich",
)


def _fresh_interpreter(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_import_datamill_loads_no_heavy_dependency_and_is_fast():
    out = _fresh_interpreter(
        "import sys, time, json\n"
        "t = time.perf_counter(); import datamill; elapsed = time.perf_counter() - t\n"
        f"print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], 'seconds': elapsed}}))"
    )
    result = json.loads(out)
    assert result["loaded"] == []
    assert result["seconds"] < 0.5


def test_public_names_resolve_lazily_to_their_classes():
    out = _fresh_interpreter(
        "import datamill, json\n"
        "print(json.dumps({n: getattr(datamill, n).__module__ for n in datamill.__all__ if n != '__version__'}))"
    )
    modules = json.loads(out)
    assert modules["BatchedPipelineABC"] == "datamill.pipeline.base"
    assert modules["PromptedGenerator"].startswith("datamill.operators")
    assert all(module.startswith("datamill.") for module in modules.values())
