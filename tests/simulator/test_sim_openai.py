"""OpenAI online endpoints: chat completions, embeddings, models, auth, bad requests."""

from __future__ import annotations

import json

import openai
import pytest
from simulator_helpers import Http, chat_body, validate

from datamill.simulator import SimulatorHandle
from datamill.simulator.replies import body_hash


def test_chat_reply_is_the_documented_text_and_ends_with_the_user_text(oai: openai.OpenAI) -> None:
    body = chat_body("What is 2+2?", system="Be terse.", temperature=0.2)
    reply = oai.chat.completions.create(**body)
    h = body_hash(body)
    assert reply.choices[0].message.content == f"[gpt-4o-mini|{h[:8]}|0] What is 2+2?"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-4o-mini"


def test_same_request_gets_the_same_reply_and_a_different_system_prompt_does_not(oai: openai.OpenAI) -> None:
    first = oai.chat.completions.create(**chat_body("same", system="A")).choices[0].message.content
    again = oai.chat.completions.create(**chat_body("same", system="A")).choices[0].message.content
    other = oai.chat.completions.create(**chat_body("same", system="B")).choices[0].message.content
    assert first == again
    assert other != first
    assert other.endswith("] same")


def test_n_choices_are_numbered_and_usage_estimates_a_quarter_token_per_char(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(**chat_body("x" * 40, system="y" * 8, n=3))
    contents = [choice.message.content for choice in reply.choices]
    assert [c.split("|")[2].split("]")[0] for c in contents] == ["0", "1", "2"]
    assert reply.usage.prompt_tokens == 12  # ceil(48 / 4)
    assert reply.usage.completion_tokens == sum(-(-len(c) // 4) for c in contents)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_user_content_given_as_text_parts_is_echoed_joined(oai: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "two"}]}
    ]
    reply = oai.chat.completions.create(model="m", messages=messages)
    assert reply.choices[0].message.content.endswith("] part one, two")


def test_json_schema_response_format_returns_json_valid_under_the_schema(oai: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "labels": {"type": "array", "items": {"enum": ["pos", "neg"]}},
            "meta": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        },
        "required": ["answer", "confidence", "labels", "meta"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    reply = oai.chat.completions.create(**chat_body("Is it good?", response_format=response_format, n=2))
    for choice in reply.choices:
        instance = json.loads(choice.message.content)
        assert validate(instance, schema) == []
        assert instance["answer"].endswith(f"|{choice.index}] Is it good?")


def test_json_object_response_format_returns_a_json_object(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(**chat_body("hi", response_format={"type": "json_object"}))
    assert json.loads(reply.choices[0].message.content)["reply"].endswith("] hi")


def test_embeddings_are_deterministic_for_string_and_list_input(oai: openai.OpenAI) -> None:
    single = oai.embeddings.create(model="text-embedding-3-small", input="alpha")
    many = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(single.data[0].embedding) == 16
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == pytest.approx(single.data[0].embedding, abs=1e-6)
    assert many.data[1].embedding != many.data[0].embedding
    shorter = oai.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=8)
    assert len(shorter.data[0].embedding) == 8


def test_embeddings_in_float_format_over_raw_http(http: Http) -> None:
    reply = http.post("/v1/embeddings", {"model": "e", "input": ["a", "b", "c"], "encoding_format": "float"})
    assert reply.status == 200
    data = reply.json()
    assert [len(item["embedding"]) for item in data["data"]] == [16, 16, 16]
    assert data["usage"]["prompt_tokens"] == 3


def test_models_are_listed_and_retrievable(oai: openai.OpenAI) -> None:
    ids = [model.id for model in oai.models.list()]
    assert "gpt-4o-mini" in ids
    assert oai.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "x"}]},
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
    ],
)
def test_bad_chat_bodies_answer_400_in_openai_error_shape(http: Http, body: dict) -> None:
    reply = http.post("/v1/chat/completions", body)
    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_a_body_that_is_not_json_answers_400(http: Http) -> None:
    reply = http.request("POST", "/v1/chat/completions", b"{nope", {"Content-Type": "application/json"})
    assert reply.status == 400
    assert "JSON" in reply.json()["error"]["message"]


def test_any_key_is_accepted_unless_one_is_required(make_simulator) -> None:
    open_sim: SimulatorHandle = make_simulator()
    with openai.OpenAI(base_url=open_sim.openai_base, api_key="anything", max_retries=0) as client:
        assert client.chat.completions.create(**chat_body("ok")).choices[0].message.content.endswith("ok")

    locked: SimulatorHandle = make_simulator(require_api_key="sk-right")
    with openai.OpenAI(base_url=locked.openai_base, api_key="sk-wrong-key", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(**chat_body("no"))
    error = caught.value.body
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Incorrect API key provided")
    with openai.OpenAI(base_url=locked.openai_base, api_key="sk-right", max_retries=0) as client:
        assert client.models.list().data
    stats = locked.stats()
    assert stats["unauthorized"] == 1
    assert stats["answered"] == 0


def test_invalid_reply_rate_answers_that_share_of_structured_choices_with_plain_text(
    oai: openai.OpenAI, simulator: SimulatorHandle
) -> None:
    response_format = {"type": "json_object"}
    simulator.configure(invalid_reply_rate=0.5)
    try:
        contents = [
            oai.chat.completions.create(**chat_body(f"q{i}", response_format=response_format))
            .choices[0]
            .message.content
            for i in range(40)
        ]
        again = (
            oai.chat.completions.create(**chat_body("q0", response_format=response_format))
            .choices[0]
            .message.content
        )
    finally:
        simulator.configure(invalid_reply_rate=0.0)
    plain = [c for c in contents if not c.startswith("{")]
    assert 8 < len(plain) < 32 and all(c.startswith("[gpt-4o-mini|") for c in plain)
    assert again == contents[0]  # the choice is the request's, not the moment's
