"""Step fingerprints: what changes them, what does not, and how a change is described."""

from __future__ import annotations

from pathlib import Path

from datamill.core.fingerprint import (
    EXCLUDED_FIELDS,
    FINGERPRINT_VERSION,
    describe_changes,
    file_identity,
    fingerprint,
)
from datamill.operators.generate import PromptedGenerator
from datamill.serving.openai_compat import APILLMServing_request


def make_op(**serving: object) -> PromptedGenerator:
    options = {"api_url": "http://127.0.0.1:1/v1", "model_name": "gpt-4o-mini", "max_workers": 4}
    options.update(serving)
    return PromptedGenerator(APILLMServing_request(**options), system_prompt="sys", user_prompt="Say: ")


def test_describe_changes_names_nested_fields_added_removed_and_changed() -> None:
    old = {
        "config": {"user_prompt": "a", "llm_serving": {"model": "m1", "params": {"temperature": 0}}},
        "x": 1,
    }
    new = {"config": {"user_prompt": "b", "llm_serving": {"model": "m2", "params": {}}}, "y": 2}
    assert describe_changes(old, new) == [
        "config.llm_serving.model changed",
        "config.llm_serving.params.temperature removed",
        "config.user_prompt changed",
        "x removed",
        "y added",
    ]
    assert describe_changes(new, new) == []


def test_fingerprint_is_stable_and_key_order_free() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert FINGERPRINT_VERSION >= 1


def test_speed_settings_stay_out_of_the_operator_fingerprint() -> None:
    assert {"max_workers", "batch_size", "timeout", "api_key"} <= EXCLUDED_FIELDS
    base = make_op().fingerprint_config()
    assert make_op(max_workers=64, timeout=5.0, max_retries=2).fingerprint_config() == base
    assert make_op(api_url="http://127.0.0.1:2/v1").fingerprint_config() == base
    assert make_op(model_name="gpt-4o").fingerprint_config() != base
    assert make_op(temperature=0.7).fingerprint_config() != base


def test_the_api_key_never_enters_the_fingerprint() -> None:
    config = make_op(api_key="sk-secret-123").fingerprint_config()
    assert "sk-secret-123" not in repr(config)


def test_file_identity_follows_content_not_path_or_mtime(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    b = tmp_path / "sub" / "b.jsonl"
    b.parent.mkdir()
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 1}\n')
    assert file_identity(a) == file_identity(b)
    a.write_text('{"x": 2}\n')
    assert file_identity(a) != file_identity(b)


def test_file_identity_of_a_parquet_directory_covers_its_parts(tmp_path: Path) -> None:
    d = tmp_path / "step.parquet"
    d.mkdir()
    (d / "part-000000.parquet").write_bytes(b"one")
    first = file_identity(d)
    (d / "part-000001.parquet.tmp").write_bytes(b"half")
    assert file_identity(d) == first
    (d / "part-000001.parquet").write_bytes(b"two")
    assert file_identity(d) != first
