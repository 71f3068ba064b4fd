"""Anthropic Messages and Message Batches: reply rule, error shapes, every result type, listing."""

from __future__ import annotations

import anthropic
import pytest
from simulator_helpers import Http, parse_jsonl, poll_until

from datamill.simulator import SimulatorHandle
from datamill.simulator.replies import body_hash

MODEL = "claude-haiku-4-5"


def _params(text: str, **extra: object) -> dict:
    return {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": text}], **extra}


def _requests(count: int, prefix: str = "r") -> list[dict]:
    return [{"custom_id": f"{prefix}{i}", "params": _params(f"{prefix} text {i}")} for i in range(count)]


def _wait_ended(http: Http, batch_id: str, timeout: float = 10.0) -> list[dict]:
    return poll_until(
        lambda: http.get(f"/v1/messages/batches/{batch_id}").json(),
        lambda b: b["processing_status"] == "ended",
        timeout,
    )


def _results(http: Http, batch: dict) -> list[dict]:
    reply = http.get(f"/v1/messages/batches/{batch['id']}/results")
    assert reply.status == 200
    return parse_jsonl(reply.body)


def test_message_reply_follows_the_rule_with_the_system_prompt_in_the_hash(
    claude: anthropic.Anthropic,
) -> None:
    params = _params("Name a colour.", system="You are terse.")
    message = claude.messages.create(**params)
    h = body_hash(params)
    assert message.content[0].type == "text"
    assert message.content[0].text == f"[{MODEL}|{h[:8]}|0] Name a colour."
    assert (message.type, message.role, message.model, message.stop_reason) == (
        "message",
        "assistant",
        MODEL,
        "end_turn",
    )
    assert message.usage.input_tokens == -(-len("You are terse.Name a colour.") // 4)
    assert message.usage.output_tokens == -(-len(message.content[0].text) // 4)
    other = claude.messages.create(**_params("Name a colour.", system="You are verbose."))
    assert other.content[0].text != message.content[0].text
    assert claude.messages.create(**params).content[0].text == message.content[0].text


def test_a_message_without_max_tokens_is_refused_in_anthropic_shape(http: Http) -> None:
    reply = http.post("/v1/messages", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert reply.status == 400
    body = reply.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


def test_a_wrong_x_api_key_gets_anthropic_authentication_error(make_simulator) -> None:
    sim: SimulatorHandle = make_simulator(require_api_key="sk-ant-right")
    with anthropic.Anthropic(base_url=sim.anthropic_base, api_key="sk-ant-wrong", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(**_params("x"))
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"
    with anthropic.Anthropic(base_url=sim.anthropic_base, api_key="sk-ant-right", max_retries=0) as client:
        assert client.messages.create(**_params("x")).content[0].text.endswith("] x")


def test_a_batch_runs_in_progress_to_ended_with_shuffled_results_equal_to_online(
    simulator: SimulatorHandle, claude: anthropic.Anthropic, http: Http
) -> None:
    simulator.configure(batch_processing_seconds=0.4, batch_finalizing_seconds=0.05)
    requests = _requests(12)
    created = claude.messages.batches.create(requests=requests)
    assert created.processing_status == "in_progress"
    assert created.results_url is None
    early = http.get(f"/v1/messages/batches/{created.id}/results")
    assert early.status == 404
    assert early.json()["type"] == "error"
    states = _wait_ended(http, created.id)
    processing = [s["request_counts"]["processing"] for s in states]
    assert processing[0] == 12 and any(0 < p < 12 for p in processing) and processing[-1] == 0
    final = states[-1]
    assert final["request_counts"]["succeeded"] == 12
    assert final["ended_at"] and final["results_url"].endswith(f"/v1/messages/batches/{created.id}/results")
    results = list(claude.messages.batches.results(created.id))
    assert [r.custom_id for r in results] != [r["custom_id"] for r in requests]
    assert sorted(r.custom_id for r in results) == sorted(r["custom_id"] for r in requests)
    online = claude.messages.create(**requests[3]["params"]).content[0].text
    by_id = {r.custom_id: r for r in results}
    assert by_id["r3"].result.type == "succeeded"
    assert by_id["r3"].result.message.content[0].text == online
    for request in requests:
        text = by_id[request["custom_id"]].result.message.content[0].text
        assert text.endswith("] " + request["params"]["messages"][0]["content"])


def test_errored_results_come_from_failed_lines_and_invalid_params(make_simulator) -> None:
    sim = make_simulator(
        batch_processing_seconds=0, batch_finalizing_seconds=0, batch_failed_line_rate=0.5, seed=3
    )
    http = Http(sim.base_url)
    requests = _requests(30)
    requests.append({"custom_id": "bad", "params": {"model": MODEL, "messages": []}})
    created = http.post("/v1/messages/batches", {"requests": requests}).json()
    final = _wait_ended(http, created["id"])[-1]
    results = {r["custom_id"]: r["result"] for r in _results(http, final)}
    assert results["bad"]["type"] == "errored"
    assert results["bad"]["error"]["error"]["type"] == "invalid_request_error"
    api_errors = [
        r for r in results.values() if r["type"] == "errored" and r["error"]["error"]["type"] == "api_error"
    ]
    assert 5 <= len(api_errors) <= 25
    counts = final["request_counts"]
    assert counts["errored"] == len(api_errors) + 1
    assert counts["succeeded"] == 31 - counts["errored"]


def test_a_canceled_batch_ends_with_canceled_results(make_simulator) -> None:
    sim = make_simulator(batch_processing_seconds=3.0, batch_finalizing_seconds=0.2)
    http = Http(sim.base_url)
    created = http.post("/v1/messages/batches", {"requests": _requests(20)}).json()
    poll_until(
        lambda: http.get(f"/v1/messages/batches/{created['id']}").json(),
        lambda b: b["request_counts"]["succeeded"] > 0,
    )
    canceling = http.post(f"/v1/messages/batches/{created['id']}/cancel").json()
    assert canceling["processing_status"] == "canceling"
    assert canceling["cancel_initiated_at"]
    final = _wait_ended(http, created["id"])[-1]
    types = [r["result"]["type"] for r in _results(http, final)]
    assert types.count("canceled") == final["request_counts"]["canceled"] > 0
    assert types.count("succeeded") == final["request_counts"]["succeeded"] > 0
    assert http.post(f"/v1/messages/batches/{created['id']}/cancel").status == 409


def test_an_expired_batch_ends_with_expired_results(make_simulator) -> None:
    sim = make_simulator(batch_processing_seconds=1.0, batch_expiry_seconds=0.3)
    http = Http(sim.base_url)
    created = http.post("/v1/messages/batches", {"requests": _requests(20)}).json()
    final = _wait_ended(http, created["id"])[-1]
    counts = final["request_counts"]
    assert counts["expired"] > 0 and counts["succeeded"] > 0
    assert counts["expired"] + counts["succeeded"] == 20
    types = [r["result"]["type"] for r in _results(http, final)]
    assert types.count("expired") == counts["expired"]


@pytest.mark.parametrize(
    ("limits", "requests", "needle"),
    [
        ({"anthropic_batch_max_requests": 3}, _requests(4), "at most 3"),
        ({"anthropic_batch_max_bytes": 200}, _requests(4), "byte limit"),
        ({}, [{"custom_id": "has space", "params": _params("x")}], "custom_id"),
        ({}, _requests(2) + _requests(1), "not unique"),
        ({}, [], "non-empty"),
    ],
)
def test_oversized_or_malformed_batches_are_refused_with_400(
    make_simulator, limits, requests, needle
) -> None:
    sim = make_simulator(**limits)
    reply = Http(sim.base_url).post("/v1/messages/batches", {"requests": requests})
    assert reply.status == 400
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert needle in body["error"]["message"]
    assert sim.stats()["batches_created"] == 0


def test_batches_list_newest_first_with_after_and_before_cursors(
    simulator: SimulatorHandle, http: Http
) -> None:
    ids = [http.post("/v1/messages/batches", {"requests": _requests(1)}).json()["id"] for _ in range(5)]
    newest = ids[::-1]
    first = http.get("/v1/messages/batches?limit=2").json()
    assert [b["id"] for b in first["data"]] == newest[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (newest[0], newest[1], True)
    after = http.get(f"/v1/messages/batches?limit=2&after_id={first['last_id']}").json()
    assert [b["id"] for b in after["data"]] == newest[2:4]
    tail = http.get(f"/v1/messages/batches?limit=2&after_id={after['last_id']}").json()
    assert ([b["id"] for b in tail["data"]], tail["has_more"]) == (newest[4:], False)
    before = http.get(f"/v1/messages/batches?limit=2&before_id={newest[3]}").json()
    assert [b["id"] for b in before["data"]] == newest[1:3]
    assert before["has_more"] is True
    assert simulator.stats()["batches_created"] == 5
    assert simulator.stats()["batch_requests"] == 5


QUIZ = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "level": {"type": "integer", "minimum": 1, "maximum": 3}},
    "required": ["question", "level"],
}


def test_a_forced_tool_is_answered_with_a_tool_use_block_valid_under_its_input_schema(
    claude: anthropic.Anthropic,
) -> None:
    import jsonschema

    tools = [{"name": "quiz", "description": "Answer here.", "input_schema": QUIZ}]
    params = _params("Ask me.", tools=tools, tool_choice={"type": "tool", "name": "quiz"})
    message = claude.messages.create(**params)
    (block,) = message.content
    assert (block.type, block.name, message.stop_reason) == ("tool_use", "quiz", "tool_use")
    jsonschema.validate(block.input, QUIZ)
    assert block.input["question"] == f"[{MODEL}|{body_hash(params)[:8]}|0] Ask me."
    assert claude.messages.create(**params).content[0].input == block.input  # deterministic
    with pytest.raises(anthropic.BadRequestError, match="not in tools"):
        claude.messages.create(**_params("x", tools=tools, tool_choice={"type": "tool", "name": "other"}))


def test_invalid_reply_rate_answers_that_share_of_forced_tool_calls_with_text_only(
    claude: anthropic.Anthropic, simulator: SimulatorHandle
) -> None:
    tools = [{"name": "quiz", "description": "Answer here.", "input_schema": QUIZ}]
    simulator.configure(invalid_reply_rate=0.5)
    try:
        kinds = [
            claude.messages.create(
                **_params(f"q{i}", tools=tools, tool_choice={"type": "tool", "name": "quiz"})
            )
            .content[0]
            .type
            for i in range(40)
        ]
    finally:
        simulator.configure(invalid_reply_rate=0.0)
    assert 8 < kinds.count("text") < 32 and kinds.count("text") + kinds.count("tool_use") == 40
