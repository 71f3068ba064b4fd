"""DataFlow's LLM operators, ``LLMLanguageFilter`` and ``MetaSampleEvaluator``, on real runs.

The simulator answers a ``json_schema`` request with an instance of the schema (an enum value
picked from the request's hash, integers within their bounds), so these runs go through the
real request, parse, drop and commit paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from operator_helpers import drops_table, failures_table, read_jsonl, run_steps, serving, write_jsonl

from datamill import LLMLanguageFilter, MetaSampleEvaluator
from datamill.errors import ConfigError, InvalidResponseError
from datamill.operators.llm_language import ISO_639_1, parse_language_code
from datamill.operators.meta_eval import DEFAULT_DIMENSIONS

TEXTS = [{"id": i, "text": f"sentence number {i} about rivers and bridges"} for i in range(40)]
DIMENSIONS = [d["dimension_name"] for d in DEFAULT_DIMENSIONS]


def test_language_filter_keeps_allowed_codes_and_counts_each_dropped_language(sim, tmp_path: Path) -> None:
    allowed = list(ISO_639_1[: len(ISO_639_1) // 2])
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    keep = LLMLanguageFilter(serving(sim.openai_base), allowed_languages=allowed)
    p = run_steps(source, tmp_path / "cache", [(keep, {"input_key": "text"})])
    kept = read_jsonl(p.step_paths()[0])
    assert kept and len(kept) < len(TEXTS)
    assert all(row["language_label"] in allowed for row in kept)
    assert [row["id"] for row in kept] == sorted(row["id"] for row in kept)
    drops = drops_table(p)
    assert sum(drops.values()) == len(TEXTS) - len(kept)
    for (step, reason), _ in drops.items():
        code = reason.split("'")[1]
        assert step == 0 and code in ISO_639_1 and code not in allowed
        assert reason == f"language {code!r} not in {sorted(allowed)}"


def test_language_filter_writes_its_label_under_output_key(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:5])
    keep = LLMLanguageFilter(serving(sim.openai_base), allowed_languages=list(ISO_639_1))
    p = run_steps(source, tmp_path / "cache", [(keep, {"input_key": "text", "output_key": "lang"})])
    rows = read_jsonl(p.step_paths()[0])
    assert len(rows) == 5 and all(row["lang"] in ISO_639_1 and "language_label" not in row for row in rows)


def test_language_filter_without_response_format_fails_rows_it_cannot_read(sim, tmp_path: Path) -> None:
    """The simulator's plain reply echoes the text: no language code, so the row fails (never a guess)."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "rivers and bridges"}])
    keep = LLMLanguageFilter(serving(sim.openai_base), allowed_languages=["en"], use_response_format=False)
    p = run_steps(source, tmp_path / "cache", [(keep, {"input_key": "text"})], allow_failures=True)
    assert read_jsonl(p.step_paths()[0]) == []
    [(step, row, error)] = failures_table(p)
    assert (step, row) == (0, 0) and "ISO 639-1" in error


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("en", "en"),
        ('"FR".', "fr"),
        ('{"language": "zh"}', "zh"),
        ('```json\n{"language": "ja"}\n```', "ja"),
        ("The language is English (en).", "en"),
        ("Language: de", "de"),
    ],
)
def test_language_codes_are_read_from_json_bare_or_prose_replies(reply: str, code: str) -> None:
    assert parse_language_code(reply) == code


@pytest.mark.parametrize("reply", ["English", "It is in a language", '{"language": "english"}'])
def test_a_reply_naming_no_iso_code_is_invalid(reply: str) -> None:
    with pytest.raises(InvalidResponseError):
        parse_language_code(reply)


def test_language_filter_refuses_unknown_codes_and_a_missing_serving() -> None:
    with pytest.raises(ConfigError, match="english"):
        LLMLanguageFilter(serving("http://127.0.0.1:9/v1"), allowed_languages=["english"])
    with pytest.raises(ConfigError, match="llm_serving"):
        LLMLanguageFilter(allowed_languages=["en"])


def test_meta_evaluator_writes_one_score_column_per_default_dimension(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:10])
    evaluate = MetaSampleEvaluator(serving(sim.openai_base))
    p = run_steps(source, tmp_path / "cache", [(evaluate, {"input_key": "text"})])
    rows = read_jsonl(p.step_paths()[0])
    assert [row["id"] for row in rows] == list(range(10))
    for row in rows:
        assert all(isinstance(row[name], int) and 1 <= row[name] <= 5 for name in DIMENSIONS)
    assert len({row[DIMENSIONS[0]] for row in rows}) > 1


def test_meta_evaluator_takes_dataflow_style_custom_dimensions(sim, tmp_path: Path) -> None:
    dimensions = [
        {
            "dimension_name": "Humour",
            "description": "Is it funny?",
            "example_list": [{"text": "pun", "score": "9"}],
        },
        {"dimension_name": "Brevity", "description": "Is it short?", "example_list": []},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:3])
    evaluate = MetaSampleEvaluator(serving(sim.openai_base), dimensions=dimensions, max_score=10)
    p = run_steps(source, tmp_path / "cache", [(evaluate, {"input_key": "text"})])
    rows = read_jsonl(p.step_paths()[0])
    assert all(1 <= row["Humour"] <= 10 and 1 <= row["Brevity"] <= 10 for row in rows)
    assert not any(name in rows[0] for name in DIMENSIONS)


def _evaluator() -> MetaSampleEvaluator:
    return MetaSampleEvaluator(serving("http://127.0.0.1:9/v1"))


@pytest.mark.parametrize(
    "reply",
    [
        '{"Text Structure": 4, "diversity & complexity": "3", "Fluency and Understandability": {"score": 5},'
        ' "Safety": 5, "Educational Value": 2, "Content Accuracy and Effectiveness": 4}',
        "Some reasoning first.\n[4, 3, 5, 5, 2, 4]",
        "Text Structure: 4\nDiversity and Complexity: 3\n**Fluency and Understandability**: 5\n"
        "Safety - 5\nEducational Value: 2\nContent Accuracy and Effectiveness = 4",
        '```json\n{"scores": [4, 3, 5, 5, 2, 4]}\n```',
    ],
)
def test_meta_scores_are_read_from_objects_lists_or_lines(reply: str) -> None:
    assert _evaluator().parse_text(reply, {}) == dict(zip(DIMENSIONS, [4, 3, 5, 5, 2, 4], strict=True))


@pytest.mark.parametrize(
    "reply", ["[4, 3, 5]", '{"Text Structure": 4}', "[4, 3, 5, 5, 2, 9]", "no scores here"]
)
def test_a_reply_missing_a_dimension_or_out_of_range_is_invalid(reply: str) -> None:
    with pytest.raises(InvalidResponseError):
        _evaluator().parse_text(reply, {})


def test_meta_evaluator_refuses_malformed_dimensions() -> None:
    with pytest.raises(ConfigError, match="example_list"):
        MetaSampleEvaluator(serving("http://127.0.0.1:9/v1"), dimensions=[{"dimension_name": "x"}])
    with pytest.raises(ConfigError, match="repeated"):
        twice = {"dimension_name": "A", "description": "", "example_list": []}
        MetaSampleEvaluator(serving("http://127.0.0.1:9/v1"), dimensions=[twice, dict(twice)])
