"""The LLM scorer, the score filter and the rule filters on real runs; drops are counted by reason."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from operator_helpers import drops_table, read_jsonl, run_steps, serving, write_jsonl

from datamill import LanguageFilter, LengthFilter, LLMScorer, RegexFilter, ScoreFilter
from datamill.errors import ConfigError, InvalidResponseError
from datamill.operators.judge import parse_score_reply

ANSWERS = [{"id": i, "answer": f"answer number {i} " + "word " * i} for i in range(20)]


def test_scorer_writes_a_score_in_range_and_a_rationale(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ANSWERS)
    scorer = LLMScorer(serving(sim.openai_base), criteria="Is it helpful?", min_score=1, max_score=10)
    p = run_steps(source, tmp_path / "cache", [(scorer, {"input_key": "answer"})])
    rows = read_jsonl(p.step_paths()[0])
    assert len(rows) == len(ANSWERS)
    assert all(isinstance(r["score"], int) and 1 <= r["score"] <= 10 for r in rows)
    assert all(r["rationale"].endswith(r["answer"]) for r in rows)
    assert len({r["score"] for r in rows}) > 1


def test_score_filter_keeps_rows_at_or_above_the_minimum_and_counts_the_rest(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ANSWERS)
    scorer = LLMScorer(
        serving(sim.openai_base), criteria="Is it helpful?", score_key="quality", rationale_key="why"
    )
    keep = ScoreFilter(min_score=6)
    p = run_steps(
        source, tmp_path / "cache", [(scorer, {"input_key": "answer"}), (keep, {"input_key": "quality"})]
    )
    scored = read_jsonl(p.step_paths()[0])
    kept = read_jsonl(p.step_paths()[1])
    assert kept == [r for r in scored if r["quality"] >= 6]
    dropped = len(scored) - len(kept)
    assert dropped > 0 and kept
    assert drops_table(p) == {(1, "score below 6"): dropped}
    step = p.last_summary.steps[1]
    assert (step.rows_in, step.rows_out, step.rows_dropped) == (20, len(kept), dropped)


def test_scorer_takes_several_columns(sim, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"q": "why?", "a": "because"}])
    scorer = LLMScorer(serving(sim.openai_base), criteria="Does the answer fit?")
    p = run_steps(source, tmp_path / "cache", [(scorer, {"input_key": ["q", "a"]})])
    assert read_jsonl(p.step_paths()[0])[0]["rationale"].endswith("q: why?\n\na: because")


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"rationale": "fine", "score": 7}', 7),
        ('```json\n{"score": "8", "rationale": "ok"}\n```', 8),
        ('I think {"score": 6.5, "rationale": "meh"} is fair', 6.5),
        ("Score: 9 - clear and correct.", 9),
    ],
)
def test_score_replies_are_parsed_leniently(reply: str, score: float) -> None:
    assert parse_score_reply(reply)["score"] == score


def test_unusable_or_out_of_range_scores_raise_invalid_response() -> None:
    scorer = LLMScorer(serving("http://127.0.0.1:9/v1"), criteria="x", min_score=1, max_score=5)
    with pytest.raises(InvalidResponseError, match="outside 1..5"):
        scorer.parse_text('{"score": 7, "rationale": "r"}', {})
    with pytest.raises(InvalidResponseError):
        scorer.parse_text("no idea", {})
    with pytest.raises(InvalidResponseError, match="not a number"):
        scorer.parse_text('{"score": "high"}', {})
    with pytest.raises(ConfigError):
        LLMScorer(serving("http://127.0.0.1:9/v1"), criteria="x", min_score=5, max_score=5)


def test_length_and_regex_filters_drop_with_reasons(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ANSWERS)
    steps = [
        (LengthFilter(min_length=4, max_length=15, unit="words"), {"input_key": "answer"}),
        (RegexFilter(r"number 1\d", keep_matching=False), {"input_key": "answer"}),
    ]
    p = run_steps(source, tmp_path / "cache", steps, batch_size=3)
    assert [r["id"] for r in read_jsonl(p.step_paths()[1])] == list(range(1, 10))
    assert drops_table(p) == {
        (0, "shorter than 4 words"): 1,
        (0, "longer than 15 words"): 7,
        (1, "matches /number 1\\d/"): 3,
    }


def test_language_filter_keeps_listed_languages_without_network(tmp_path: Path, monkeypatch) -> None:
    def no_network(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the language filter tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    rows = [
        {"id": 0, "text": "The weather is lovely today and we are going to the beach."},
        {"id": 1, "text": "Il fait très beau aujourd'hui et nous allons à la plage."},
        {"id": 2, "text": "Heute ist das Wetter schön und wir gehen an den Strand."},
        {"id": 3, "text": "This sentence is written in plain English as well."},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    op = LanguageFilter(["en", "fr"], min_confidence=0.5, language_key="lang")
    p = run_steps(source, tmp_path / "cache", [(op, {"input_key": "text"})])
    assert [(r["id"], r["lang"]) for r in read_jsonl(p.step_paths()[0])] == [(0, "en"), (1, "fr"), (3, "en")]
    assert drops_table(p) == {(0, "language not in ['en', 'fr']"): 1}


def test_a_filter_on_a_missing_column_fails_that_row_only(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl", [{"id": 0, "score": 9}, {"id": 1, "score": None}, {"id": 2, "score": "x"}]
    )
    p = run_steps(source, tmp_path / "cache", [(ScoreFilter(min_score=5), {})], allow_failures=True)
    assert [r["id"] for r in read_jsonl(p.step_paths()[0])] == [0]
    assert p.last_summary.steps[0].rows_failed == 2
