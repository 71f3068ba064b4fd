"""Row-local operators travel to Ray workers: each survives a cloudpickle round trip and
computes the same outcomes on the other side (the Ray executor sends them this way)."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest

from datamill import (
    ExpandOperator,
    FilterOperator,
    LanguageFilter,
    LengthFilter,
    MapOperator,
    RegexFilter,
    ScoreFilter,
)
from datamill.operators.base import Operator

cloudpickle = pytest.importorskip("ray.cloudpickle", reason="needs ray: pip install 'datamill[ray]'")

ROWS = [
    {"id": 1, "text": "The quick brown fox jumps over the lazy dog.", "score": 4},
    {"id": 2, "text": "Der schnelle braune Fuchs springt über den faulen Hund.", "score": 1},
    {"id": 3, "text": "ok", "score": "n/a"},
    {"id": 4, "score": 5},
]


def _operators() -> list[tuple[Operator, dict[str, Any]]]:
    suffix = "!"  # captured by a closure: travels by value
    found = [
        (MapOperator(lambda text: text.upper() + suffix), {"input_key": "text", "output_key": "loud"}),
        (FilterOperator(lambda value: value % 2 == 1), {"input_key": "id"}),
        (ExpandOperator(lambda text: text.split()[:2]), {"input_key": "text", "output_key": "word"}),
        (ScoreFilter(min_score=2), {"input_key": "score"}),
        (LengthFilter(min_length=3, unit="words"), {"input_key": "text"}),
        (RegexFilter(r"\bfox\b", flags=re.I), {"input_key": "text"}),
    ]
    if importlib.util.find_spec("py3langid") is not None:
        found.append((LanguageFilter(["en"], language_key="lang"), {"input_key": "text"}))
    return found


@pytest.mark.parametrize(("op", "call"), _operators(), ids=lambda value: type(value).__name__)
def test_a_row_local_operator_computes_the_same_outcomes_after_a_cloudpickle_round_trip(
    op: Operator, call: dict[str, Any]
) -> None:
    copy = cloudpickle.loads(cloudpickle.dumps(op))
    assert copy is not op and op.row_local
    assert copy.process_rows(ROWS, 0, call) == op.process_rows(ROWS, 0, call)
    assert copy.fingerprint_config() == op.fingerprint_config()
