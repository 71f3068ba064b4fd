"""Each knob changes what a client sees: latency, failures, rate limits, junk, drops, run-time changes."""

from __future__ import annotations

import http.client
import time
import urllib.error

import anthropic
import openai
import pytest
from simulator_helpers import Http, chat_body

from datamill.simulator import SimulatorHandle


def _timed_call(sim: SimulatorHandle, text: str) -> float:
    start = time.perf_counter()
    assert Http(sim.base_url).post("/v1/chat/completions", chat_body(text)).status == 200
    return time.perf_counter() - start


def test_latency_mean_delays_each_answer_and_jitter_spreads_it(make_simulator) -> None:
    instant = make_simulator()
    assert _timed_call(instant, "a") < 0.19
    slow = make_simulator(latency_mean=0.2)
    assert 0.19 <= _timed_call(slow, "b") < 1.0
    jittery = make_simulator(latency_mean=0.15, latency_jitter=0.1, seed=1)
    durations = [_timed_call(jittery, str(i)) for i in range(6)]
    assert all(0.045 <= d < 1.0 for d in durations)
    assert max(durations) - min(durations) > 0.02


def test_failure_rate_answers_that_fraction_with_500_in_openai_shape(make_simulator) -> None:
    sim = make_simulator(failure_rate=0.3, seed=5)
    client = Http(sim.base_url)
    replies = [client.post("/v1/chat/completions", chat_body(f"q{i}")) for i in range(300)]
    failed = [r for r in replies if r.status == 500]
    assert 60 <= len(failed) <= 120
    assert {r.json()["error"]["type"] for r in failed} == {"server_error"}
    assert all(r.status in (200, 500) for r in replies)
    stats = sim.stats()
    assert stats["server_errors"] == len(failed)
    assert stats["answered"] == 300 - len(failed)


def test_the_same_seed_gives_the_same_failure_sequence(make_simulator) -> None:
    def statuses(sim: SimulatorHandle) -> list[int]:
        client = Http(sim.base_url)
        return [client.post("/v1/chat/completions", chat_body(f"q{i}")).status for i in range(40)]

    first = statuses(make_simulator(failure_rate=0.5, seed=9))
    assert first == statuses(make_simulator(failure_rate=0.5, seed=9))
    assert first != statuses(make_simulator(failure_rate=0.5, seed=10))


def test_past_the_rpm_limit_a_cheap_429_carries_retry_after(make_simulator) -> None:
    sim = make_simulator(rpm_limit=3, latency_mean=0.5)
    client = Http(sim.base_url)
    for i in range(3):
        assert client.post("/v1/chat/completions", chat_body(f"ok{i}")).status == 200
    start = time.perf_counter()
    limited = client.post("/v1/chat/completions", chat_body("too many"))
    assert time.perf_counter() - start < 0.4  # no latency, no work
    assert limited.status == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert 0 < int(limited.headers["retry-after-ms"]) <= 20_000
    stats = sim.stats()
    assert stats["rate_limited"] == 1
    assert stats["requests"] == 4
    assert stats["distinct_requests"] == 3  # the refused body was never read


def test_the_rate_limit_refills_over_time(make_simulator) -> None:
    sim = make_simulator(rpm_limit=120, rpm_burst=1)  # one token, refilled every 0.5 s
    client = Http(sim.base_url)
    assert client.post("/v1/chat/completions", chat_body("a")).status == 200
    assert client.post("/v1/chat/completions", chat_body("b")).status == 429
    time.sleep(0.55)
    assert client.post("/v1/chat/completions", chat_body("b")).status == 200


def test_anthropic_429_and_500_use_anthropic_error_shapes(make_simulator) -> None:
    sim = make_simulator(rpm_limit=1)
    with anthropic.Anthropic(base_url=sim.anthropic_base, api_key="k", max_retries=0) as client:
        params = {
            "model": "claude-haiku-4-5",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
        }
        client.messages.create(**params)
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(**params)
        assert limited.value.body["error"]["type"] == "rate_limit_error"
        assert int(limited.value.response.headers["retry-after"]) >= 1
        sim.configure(rpm_limit=None, failure_rate=1.0)
        with pytest.raises(anthropic.InternalServerError) as failed:
            client.messages.create(**params)
        assert failed.value.body == {
            "type": "error",
            "error": {"type": "api_error", "message": "Internal server error"},
        }


def test_malformed_rate_answers_200_with_unusable_bodies(make_simulator) -> None:
    sim = make_simulator(malformed_rate=1.0, seed=2)
    client = Http(sim.base_url)
    kinds = set()
    for i in range(20):
        reply = client.post("/v1/chat/completions", chat_body(f"m{i}"))
        assert reply.status == 200
        try:
            body = reply.json()
        except ValueError:
            kinds.add("not json")
        else:
            assert "choices" not in body
            kinds.add("no choices")
    assert kinds == {"not json", "no choices"}
    stats = sim.stats()
    assert stats["malformed"] == 20
    assert stats["answered"] == 0


def test_drop_rate_closes_the_connection_without_a_response(make_simulator) -> None:
    sim = make_simulator(drop_rate=1.0)
    with pytest.raises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
        Http(sim.base_url).post("/v1/chat/completions", chat_body("gone"))
    with openai.OpenAI(base_url=sim.openai_base, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(**chat_body("gone again"))
    stats = sim.stats()
    assert stats["dropped"] == 2
    assert stats["answered"] == 0


def test_knobs_change_at_run_time_and_bad_knobs_are_refused(simulator: SimulatorHandle, http: Http) -> None:
    simulator.configure(failure_rate=1.0)
    assert http.post("/v1/chat/completions", chat_body("x")).status == 500
    config = simulator.configure(failure_rate=0.0, latency_mean=0.0)
    assert config["failure_rate"] == 0.0
    assert http.post("/v1/chat/completions", chat_body("x")).status == 200
    with pytest.raises(ValueError, match="unknown simulator knob"):
        simulator.configure(no_such_knob=1)
    with pytest.raises(ValueError, match="failure_rate"):
        simulator.configure(failure_rate=1.5)
    assert http.post("/_sim/config", {"latency_mean": "slow"}).status == 400
    assert simulator.config()["failure_rate"] == 0.0


def test_an_rpm_limit_is_advertised_in_the_headers_of_every_reply(make_simulator) -> None:
    sim = make_simulator(rpm_limit=600, rpm_burst=10)
    client = Http(sim.base_url)
    first = client.post("/v1/chat/completions", chat_body("a"))
    second = client.post("/v1/chat/completions", chat_body("b"))
    assert first.status == second.status == 200
    assert first.headers["x-ratelimit-limit-requests"] == "600"
    assert int(second.headers["x-ratelimit-remaining-requests"]) < int(
        first.headers["x-ratelimit-remaining-requests"]
    )
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    claude = client.post(
        "/v1/messages",
        {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert claude.status == 200 and claude.headers["anthropic-ratelimit-requests-limit"] == "600"
    assert claude.headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_reject_unknown_models_answers_404_model_not_found(make_simulator) -> None:
    sim = make_simulator(reject_unknown_models=True)
    client = Http(sim.base_url)
    reply = client.post("/v1/chat/completions", {**chat_body("a"), "model": "gpt-nope"})
    assert reply.status == 404 and reply.json()["error"]["code"] == "model_not_found"
    assert client.post("/v1/chat/completions", chat_body("a")).status == 200
