"""Generators on real runs against the simulator: templates, chat, structured output, n samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from operator_helpers import failures_table, read_jsonl, run_steps, serving, write_jsonl
from pydantic import BaseModel

from datamill import (
    ChatGenerator,
    PromptedGenerator,
    PromptTemplateGenerator,
    StructuredGenerator,
)
from datamill.errors import ConfigError, InvalidResponseError, KeyValidationError

TEXTS = [{"id": i, "text": f"sentence {i}", "lang": ["French", "German"][i % 2]} for i in range(6)]


def test_template_generator_fills_the_prompt_from_several_columns(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    op = PromptTemplateGenerator(serving(sim.openai_base), template="Translate {text} into {lang}.")
    p = run_steps(source, tmp_path / "cache", [(op, {"output_key": "translation"})])
    rows = read_jsonl(p.step_paths()[0])
    assert [r["id"] for r in rows] == list(range(6))
    for row in rows:
        assert row["translation"].endswith(f"Translate {row['text']} into {row['lang']}.")
    assert op.input_keys({}) == ["text", "lang"]


def test_template_with_a_missing_column_fails_at_compile_naming_it(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    op = PromptTemplateGenerator(serving(sim.openai_base), template="Say {text} in {language}")
    with pytest.raises(KeyValidationError, match="language"):
        run_steps(source, tmp_path / "cache", [(op, {"output_key": "out"})])
    assert sim.stats()["requests"] == 0


def test_template_rejects_positional_fields_and_keeps_literal_braces(sim) -> None:
    with pytest.raises(ConfigError, match="positional"):
        PromptTemplateGenerator(serving(sim.openai_base), template="Translate {} please")
    op = PromptTemplateGenerator(serving(sim.openai_base), template='Answer as {{"x": 1}} for {text}')
    assert op.input_keys({}) == ["text"]


def test_chat_generator_sends_the_conversation_and_fails_only_malformed_rows(sim, tmp_path: Path) -> None:
    rows = [
        {
            "id": 0,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "tell me a joke"},
            ],
        },
        {"id": 1, "messages": [{"role": "user", "content": "what is 2+2?"}]},
        {"id": 2, "messages": [{"content": "no role"}]},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    op = ChatGenerator(serving(sim.openai_base), system_prompt="Be brief.")
    p = run_steps(source, tmp_path / "cache", [(op, {})], allow_failures=True)
    out = read_jsonl(p.step_paths()[0])
    assert [r["id"] for r in out] == [0, 1]
    assert out[0]["response"].endswith("tell me a joke")
    assert out[1]["response"].endswith("what is 2+2?")
    failures = failures_table(p)
    assert [(step, row) for step, row, _ in failures] == [(0, 2)]
    assert "role" in failures[0][2]


SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["question", "difficulty", "tags"],
}


def test_structured_generator_turns_each_schema_field_into_a_column(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    op = StructuredGenerator(serving(sim.openai_base), "Write a quiz question.", json_schema=SCHEMA)
    then = PromptedGenerator(serving(sim.openai_base), user_prompt="Answer: ")
    p = run_steps(
        source,
        tmp_path / "cache",
        [(op, {"input_key": "text"}), (then, {"input_key": "question", "output_key": "answer"})],
    )
    first = read_jsonl(p.step_paths()[0])
    for row in first:
        assert row["question"].endswith(row["text"])
        assert 1 <= row["difficulty"] <= 5
        assert isinstance(row["tags"], list)
    assert op.output_keys({}) == ["question", "difficulty", "tags"]
    second = read_jsonl(p.step_paths()[1])
    assert all(row["answer"].endswith(row["question"]) for row in second)


class Quiz(BaseModel):
    question: str
    difficulty: int
    correct: bool


def test_structured_generator_validates_with_a_pydantic_model(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    op = StructuredGenerator(serving(sim.openai_base), "Write a quiz question.", json_schema=Quiz)
    p = run_steps(source, tmp_path / "cache", [(op, {"input_key": "text"})])
    rows = read_jsonl(p.step_paths()[0])
    assert len(rows) == len(TEXTS)
    for row in rows:
        Quiz.model_validate({k: row[k] for k in ("question", "difficulty", "correct")})
    assert op.schema_name == "Quiz"


class NoResponseFormat(StructuredGenerator):
    """Asks without ``response_format``, so the simulator answers plain text."""

    def request_params(self):  # type: ignore[no-untyped-def]
        return {}


def test_an_invalid_structured_reply_fails_the_row_with_the_reason(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:2])
    op = NoResponseFormat(serving(sim.openai_base), "Write a quiz question.", json_schema=SCHEMA)
    p = run_steps(source, tmp_path / "cache", [(op, {"input_key": "text"})], allow_failures=True)
    assert read_jsonl(p.step_paths()[0]) == []
    assert all("not a JSON object" in error for _, _, error in failures_table(p))
    assert len(failures_table(p)) == 2


def test_structured_parse_raises_invalid_response_on_schema_violations() -> None:
    op = StructuredGenerator.__new__(StructuredGenerator)
    StructuredGenerator.__init__(op, serving("http://127.0.0.1:9/v1"), json_schema=SCHEMA)
    good = '```json\n{"question": "q", "difficulty": 3, "tags": ["a"]}\n```'
    assert op.parse_text(good, {}) == {"question": "q", "difficulty": 3, "tags": ["a"]}
    with pytest.raises(InvalidResponseError, match="maximum"):
        op.parse_text('{"question": "q", "difficulty": 9, "tags": []}', {})
    with pytest.raises(InvalidResponseError, match="\\$: 'tags' is a required property"):
        op.parse_text('{"question": "q", "difficulty": 2}', {})
    with pytest.raises(InvalidResponseError, match="not a JSON object"):
        op.parse_text("I cannot help with that.", {})


@pytest.mark.parametrize("mode", ["list", "rows"])
def test_n_samples_come_from_one_request_as_a_list_or_as_rows(sim, tmp_path: Path, mode: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:4])
    op = PromptedGenerator(serving(sim.openai_base), user_prompt="Paraphrase: ", n=3, n_mode=mode)
    p = run_steps(
        source, tmp_path / "cache", [(op, {"input_key": "text", "output_key": "para"})], batch_size=3
    )
    rows = read_jsonl(p.step_paths()[0])
    assert sim.stats()["requests"] == 4
    if mode == "list":
        assert [r["id"] for r in rows] == [0, 1, 2, 3]
        for row in rows:
            assert len(row["para"]) == 3 and len(set(row["para"])) == 3
            assert all(text.endswith(row["text"]) for text in row["para"])
    else:
        assert [r["id"] for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert all(row["para"].endswith(row["text"]) for row in rows)
        assert p.last_summary.steps[0].rows_out == 12


def test_structured_n_samples_in_list_mode_make_list_columns(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:2])
    op = StructuredGenerator(serving(sim.openai_base), "Quiz.", json_schema=Quiz, n=2)
    p = run_steps(source, tmp_path / "cache", [(op, {"input_key": "text"})])
    for row in read_jsonl(p.step_paths()[0]):
        assert len(row["question"]) == 2 and len(row["difficulty"]) == 2


def test_sampling_arguments_are_checked(sim) -> None:
    with pytest.raises(ConfigError, match="n must be"):
        PromptedGenerator(serving(sim.openai_base), n=0)
    with pytest.raises(ConfigError, match="n_mode"):
        PromptedGenerator(serving(sim.openai_base), n=2, n_mode="columns")
