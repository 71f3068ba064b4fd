"""OpenAI Files and Batches: the whole lifecycle, every failure case, shuffled results, listing."""

from __future__ import annotations

import json

import openai
import pytest
from simulator_helpers import Http, batch_line, chat_body, jsonl, parse_jsonl, poll_until, upload_and_create

from datamill.simulator import SimulatorHandle

FAST = {"batch_validating_seconds": 0.0, "batch_processing_seconds": 0.0, "batch_finalizing_seconds": 0.0}


def _wait(http: Http, batch_id: str, *statuses: str, timeout: float = 10.0) -> list[dict]:
    return poll_until(
        lambda: http.get(f"/v1/batches/{batch_id}").json(), lambda b: b["status"] in statuses, timeout
    )


def _file_lines(http: Http, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    reply = http.get(f"/v1/files/{file_id}/content")
    assert reply.status == 200
    return parse_jsonl(reply.body)


def test_files_upload_retrieve_download_list_and_delete(http: Http) -> None:
    data = jsonl([batch_line("a", "x")])
    uploaded = http.upload(data, filename="mine.jsonl").json()
    assert uploaded["object"] == "file"
    assert (uploaded["bytes"], uploaded["filename"], uploaded["purpose"]) == (
        len(data),
        "mine.jsonl",
        "batch",
    )
    assert isinstance(uploaded["created_at"], int)
    assert http.get(f"/v1/files/{uploaded['id']}").json() == uploaded
    assert http.get(f"/v1/files/{uploaded['id']}/content").body == data
    assert [f["id"] for f in http.get("/v1/files").json()["data"]] == [uploaded["id"]]
    assert http.request("DELETE", f"/v1/files/{uploaded['id']}").json()["deleted"] is True
    missing = http.get(f"/v1/files/{uploaded['id']}")
    assert missing.status == 404
    assert "error" in missing.json()


def test_a_batch_walks_through_every_state_and_its_counts_grow(make_simulator) -> None:
    sim = make_simulator(
        batch_validating_seconds=0.15, batch_processing_seconds=0.5, batch_finalizing_seconds=0.15
    )
    http = Http(sim.base_url)
    created = upload_and_create(http, jsonl([batch_line(f"r{i}", f"question {i}") for i in range(10)]))
    assert created["status"] == "validating"
    assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    states = _wait(http, created["id"], "completed")
    statuses = [s["status"] for s in states]
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == [
        "validating",
        "in_progress",
        "finalizing",
        "completed",
    ]
    completed_counts = [s["request_counts"]["completed"] for s in states if s["status"] == "in_progress"]
    assert any(0 < c < 10 for c in completed_counts)
    assert completed_counts == sorted(completed_counts)
    final = states[-1]
    assert final["request_counts"] == {"total": 10, "completed": 10, "failed": 0}
    for stamp in ("created_at", "in_progress_at", "finalizing_at", "completed_at"):
        assert isinstance(final[stamp], int)
    assert final["created_at"] <= final["in_progress_at"] <= final["completed_at"]
    assert final["error_file_id"] is None
    assert final["errors"] is None


def test_output_lines_are_shuffled_joinable_by_custom_id_and_equal_the_online_reply(make_simulator) -> None:
    sim = make_simulator(**FAST)
    http = Http(sim.base_url)
    inputs = {f"row-{i}": f"text number {i}" for i in range(20)}
    created = upload_and_create(http, jsonl([batch_line(cid, text) for cid, text in inputs.items()]))
    final = _wait(http, created["id"], "completed")[-1]
    lines = _file_lines(http, final["output_file_id"])
    assert [line["custom_id"] for line in lines] != list(inputs)
    assert sorted(line["custom_id"] for line in lines) == sorted(inputs)
    online = http.post("/v1/chat/completions", chat_body("text number 7")).json()
    for line in lines:
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"]
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        assert content.endswith("] " + inputs[line["custom_id"]])
        if line["custom_id"] == "row-7":
            assert content == online["choices"][0]["message"]["content"]


def _bad_file_case(case: str) -> tuple[bytes, dict, str, int | None]:
    good = [batch_line(f"r{i}", f"q{i}") for i in range(3)]
    if case == "bad json":
        return jsonl([good[0], '{"custom_id": "r1", "method": ', good[2]]), {}, "invalid_json_line", 2
    if case == "duplicate custom_id":
        return jsonl([good[0], good[1], batch_line("r0", "again")]), {}, "duplicate_custom_id", 3
    if case == "wrong method":
        return jsonl([good[0], batch_line("r1", "q", method="GET"), good[2]]), {}, "invalid_method", 2
    if case == "wrong url":
        return jsonl([batch_line("r0", "q", url="/v1/embeddings"), good[1]]), {}, "invalid_url", 1
    if case == "too many lines":
        return jsonl(good), {"openai_batch_max_lines": 2}, "too_many_lines", None
    assert case == "too many bytes"
    return jsonl(good), {"openai_batch_max_bytes": 100}, "file_too_large", None


@pytest.mark.parametrize(
    "case",
    ["bad json", "duplicate custom_id", "wrong method", "wrong url", "too many lines", "too many bytes"],
)
def test_an_invalid_input_file_fails_the_batch_after_validating(make_simulator, case: str) -> None:
    data, limits, code, line = _bad_file_case(case)
    sim = make_simulator(batch_validating_seconds=0.05, **limits)
    http = Http(sim.base_url)
    created = upload_and_create(http, data)
    assert created["status"] == "validating"
    final = _wait(http, created["id"], "failed", "completed")[-1]
    assert final["status"] == "failed"
    errors = final["errors"]
    assert errors["object"] == "list"
    assert errors["data"][0]["code"] == code
    assert errors["data"][0]["line"] == line
    assert errors["data"][0]["message"]
    assert isinstance(final["failed_at"], int)
    assert final["in_progress_at"] is None
    assert final["output_file_id"] is None and final["error_file_id"] is None
    assert sim.stats()["batch_requests"] == 0


def test_an_expired_batch_keeps_finished_lines_and_expires_the_rest(make_simulator) -> None:
    sim = make_simulator(batch_validating_seconds=0, batch_processing_seconds=1.0, batch_expiry_seconds=0.4)
    http = Http(sim.base_url)
    ids = [f"r{i}" for i in range(20)]
    created = upload_and_create(http, jsonl([batch_line(cid, cid) for cid in ids]))
    assert created["expires_at"] >= created["created_at"]
    final = _wait(http, created["id"], "expired", "completed")[-1]
    assert final["status"] == "expired"
    assert isinstance(final["expired_at"], int)
    done = _file_lines(http, final["output_file_id"])
    expired = _file_lines(http, final["error_file_id"])
    assert 1 <= len(done) <= 15
    assert len(done) == final["request_counts"]["completed"]
    assert sorted(line["custom_id"] for line in done + expired) == sorted(ids)
    for line in expired:
        assert line["response"] is None
        assert line["error"]["code"] == "batch_expired"


def test_a_cancelled_batch_goes_through_cancelling_and_keeps_finished_lines(make_simulator) -> None:
    sim = make_simulator(
        batch_validating_seconds=0, batch_processing_seconds=3.0, batch_finalizing_seconds=0.2
    )
    http = Http(sim.base_url)
    ids = [f"c{i}" for i in range(20)]
    created = upload_and_create(http, jsonl([batch_line(cid, cid) for cid in ids]))
    poll_until(
        lambda: http.get(f"/v1/batches/{created['id']}").json(),
        lambda b: b["request_counts"]["completed"] > 0,
    )
    cancelling = http.post(f"/v1/batches/{created['id']}/cancel").json()
    assert cancelling["status"] == "cancelling"
    assert isinstance(cancelling["cancelling_at"], int)
    final = _wait(http, created["id"], "cancelled")[-1]
    assert isinstance(final["cancelled_at"], int)
    done = _file_lines(http, final["output_file_id"])
    rest = _file_lines(http, final["error_file_id"])
    assert 1 <= len(done) < 20
    assert sorted(line["custom_id"] for line in done + rest) == sorted(ids)
    assert {line["error"]["code"] for line in rest} == {"batch_cancelled"}
    again = http.post(f"/v1/batches/{created['id']}/cancel")
    assert again.status == 409


def test_failed_line_rate_sends_lines_to_the_error_file_with_a_500_body(make_simulator) -> None:
    sim = make_simulator(**FAST, batch_failed_line_rate=0.5, seed=4)
    http = Http(sim.base_url)
    created = upload_and_create(http, jsonl([batch_line(f"f{i}", f"t{i}") for i in range(40)]))
    final = _wait(http, created["id"], "completed")[-1]
    errors = _file_lines(http, final["error_file_id"])
    done = _file_lines(http, final["output_file_id"])
    counts = final["request_counts"]
    assert 8 <= len(errors) <= 32
    assert (counts["failed"], counts["completed"], counts["total"]) == (len(errors), len(done), 40)
    for line in errors:
        assert line["response"]["status_code"] == 500
        assert line["response"]["body"]["error"]["message"]
        assert line["error"]["code"] and line["error"]["message"]
    if len(errors) > 1:
        assert [line["custom_id"] for line in errors] != sorted(
            (line["custom_id"] for line in errors), key=lambda c: int(c[1:])
        )


def test_batches_list_newest_first_with_pagination_and_metadata(
    simulator: SimulatorHandle, oai: openai.OpenAI
) -> None:
    http = Http(simulator.base_url)
    ids = [
        upload_and_create(http, jsonl([batch_line("a", "x")]), metadata={"i": str(i)})["id"] for i in range(5)
    ]
    first = http.get("/v1/batches?limit=2").json()
    assert [b["id"] for b in first["data"]] == [ids[4], ids[3]]
    assert [b["metadata"] for b in first["data"]] == [{"i": "4"}, {"i": "3"}]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
    second = http.get(f"/v1/batches?limit=2&after={first['last_id']}").json()
    assert [b["id"] for b in second["data"]] == [ids[2], ids[1]]
    last = http.get(f"/v1/batches?limit=2&after={second['last_id']}").json()
    assert ([b["id"] for b in last["data"]], last["has_more"]) == ([ids[0]], False)
    assert [b.id for b in oai.batches.list(limit=2)] == ids[::-1]


def test_batch_creation_refuses_unknown_files_endpoints_and_windows(http: Http) -> None:
    file_id = http.upload(jsonl([batch_line("a", "x")])).json()["id"]
    base = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    assert http.post("/v1/batches", {**base, "input_file_id": "file-nope"}).status == 404
    assert http.post("/v1/batches", {**base, "endpoint": "/v1/responses"}).status == 400
    assert http.post("/v1/batches", {**base, "completion_window": "1h"}).status == 400
    assert http.get("/v1/batches/batch_nope").status == 404


def test_the_openai_sdk_runs_a_batch_end_to_end(simulator: SimulatorHandle, oai: openai.OpenAI) -> None:
    simulator.configure(**FAST)
    data = jsonl([batch_line(f"s{i}", f"sdk {i}") for i in range(4)])
    uploaded = oai.files.create(file=("in.jsonl", data), purpose="batch")
    batch = oai.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "1"},
    )
    final = poll_until(
        lambda: oai.batches.retrieve(batch.id).model_dump(), lambda b: b["status"] == "completed"
    )[-1]
    assert final["metadata"] == {"run": "1"}
    lines = [json.loads(line) for line in oai.files.content(final["output_file_id"]).text.splitlines()]
    assert {line["custom_id"] for line in lines} == {"s0", "s1", "s2", "s3"}
