"""The counters behind "never pays twice": duplicates versus retries, client keys, reset."""

from __future__ import annotations

import urllib.error
from concurrent.futures import ThreadPoolExecutor

import pytest
from simulator_helpers import Http, batch_line, chat_body, jsonl, poll_until, upload_and_create

from datamill.simulator import SimulatorHandle


def test_a_request_repeated_after_a_200_is_a_duplicate(simulator: SimulatorHandle, http: Http) -> None:
    for _ in range(3):
        assert http.post("/v1/chat/completions", chat_body("again")).status == 200
    assert http.post("/v1/chat/completions", chat_body("other")).status == 200
    stats = simulator.stats()
    assert stats["requests"] == 4
    assert stats["answered"] == 4
    assert stats["distinct_requests"] == 2
    assert stats["duplicates"] == 2


@pytest.mark.parametrize("knob", ["failure_rate", "malformed_rate", "drop_rate"])
def test_a_retry_after_a_failed_attempt_is_not_a_duplicate(
    simulator: SimulatorHandle, http: Http, knob: str
) -> None:
    simulator.configure(**{knob: 1.0})
    try:
        http.post("/v1/chat/completions", chat_body("retry me"))
    except (ConnectionError, urllib.error.URLError, OSError):
        pass
    simulator.configure(**{knob: 0.0})
    assert http.post("/v1/chat/completions", chat_body("retry me")).status == 200
    stats = simulator.stats()
    assert stats["requests"] == 2
    assert stats["distinct_requests"] == 1
    assert stats["answered"] == 1
    assert stats["duplicates"] == 0


def test_a_retry_after_a_429_is_not_a_duplicate(make_simulator) -> None:
    sim = make_simulator(rpm_limit=1)
    client = Http(sim.base_url)
    assert client.post("/v1/chat/completions", chat_body("first")).status == 200
    assert client.post("/v1/chat/completions", chat_body("second")).status == 429
    sim.configure(rpm_limit=None)
    assert client.post("/v1/chat/completions", chat_body("second")).status == 200
    stats = sim.stats()
    assert (stats["rate_limited"], stats["answered"], stats["duplicates"]) == (1, 2, 0)


def test_identical_requests_in_flight_together_are_both_paid_and_one_is_a_duplicate(make_simulator) -> None:
    sim = make_simulator(latency_mean=0.2)
    client = Http(sim.base_url)
    with ThreadPoolExecutor(2) as pool:
        statuses = list(
            pool.map(lambda _: client.post("/v1/chat/completions", chat_body("twin")).status, range(2))
        )
    assert statuses == [200, 200]
    assert sim.stats()["duplicates"] == 1


def test_client_keys_answered_twice_are_listed(simulator: SimulatorHandle, http: Http) -> None:
    for text, key in [("a", "key-a"), ("b", "key-b"), ("a again", "key-a"), ("no key", None)]:
        headers = {"X-Datamill-Request-Key": key} if key else {}
        assert http.post("/v1/chat/completions", chat_body(text), headers).status == 200
    detail = simulator.stats(detail=True)
    assert detail["answered_by_client_key"] == {"key-a": 2, "key-b": 1}
    assert detail["duplicate_client_keys"] == ["key-a"]
    assert "answered_by_client_key" not in simulator.stats()


def test_a_failed_attempt_does_not_count_for_its_client_key(simulator: SimulatorHandle, http: Http) -> None:
    simulator.configure(failure_rate=1.0)
    http.post("/v1/chat/completions", chat_body("k"), {"X-Datamill-Request-Key": "k1"})
    simulator.configure(failure_rate=0.0)
    http.post("/v1/chat/completions", chat_body("k"), {"X-Datamill-Request-Key": "k1"})
    detail = simulator.stats(detail=True)
    assert detail["answered_by_client_key"] == {"k1": 1}
    assert detail["duplicate_client_keys"] == []


def test_tokens_of_answered_calls_are_summed(simulator: SimulatorHandle, http: Http) -> None:
    reply = http.post("/v1/chat/completions", chat_body("12345678", system="abcd")).json()
    stats = simulator.stats()
    assert stats["prompt_tokens"] == reply["usage"]["prompt_tokens"] == 3
    assert stats["completion_tokens"] == reply["usage"]["completion_tokens"]


def test_reset_zeroes_counters_and_forgets_answers_but_keeps_files(
    simulator: SimulatorHandle, http: Http
) -> None:
    http.post("/v1/chat/completions", chat_body("before"))
    file_id = http.upload(b'{"x": 1}\n').json()["id"]
    simulator.reset()
    assert all(value == 0 for value in simulator.stats().values())
    http.post("/v1/chat/completions", chat_body("before"))
    assert simulator.stats()["duplicates"] == 0
    assert http.get(f"/v1/files/{file_id}").status == 200


def test_a_batch_line_already_answered_online_is_a_batch_duplicate(
    simulator: SimulatorHandle, http: Http
) -> None:
    simulator.configure(batch_validating_seconds=0, batch_processing_seconds=0, batch_finalizing_seconds=0)
    assert http.post("/v1/chat/completions", chat_body("paid online")).status == 200
    batch = upload_and_create(http, jsonl([batch_line("a", "paid online"), batch_line("b", "fresh")]))
    poll_until(lambda: http.get(f"/v1/batches/{batch['id']}").json(), lambda b: b["status"] == "completed")
    stats = simulator.stats()
    assert stats["batches_created"] == 1
    assert stats["batch_requests"] == 2
    assert stats["batch_answered"] == 2
    assert stats["batch_duplicates"] == 1
    assert stats["files_created"] == 1  # the upload; result files are the provider's
