"""``import datamill.distilabel`` stays as light as ``import datamill``: no datasets, no engine."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("datasets", "pandas", "pyarrow", "numpy", "aiohttp", "jinja2", "datamill.pipeline.base")


def test_importing_the_front_loads_nothing_heavy_until_a_name_is_used() -> None:
    code = (
        "import sys, json\n"
        "import datamill.distilabel as d\n"
        f"before = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "names = {n: getattr(d, n).__module__ for n in d.__all__}\n"
        "print(json.dumps({'before': before, 'names': names}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["before"] == []
    assert all(module.startswith("datamill.") for module in result["names"].values())
    assert result["names"]["Pipeline"] == "datamill.distilabel.pipeline"
