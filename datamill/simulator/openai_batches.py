"""OpenAI's Batches API: run an uploaded JSONL file as a batch, write output and error files.

The input file is checked when the batch is created, but a bad file is reported the way OpenAI
reports it: the batch is created, sits in ``validating``, then turns ``failed`` with
``errors.data`` naming each bad line (``INPUT_ERROR_CODES``). Output and error files hold their
lines shuffled, as the real service does, so a client must join on ``custom_id``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from datamill.simulator.batch_engine import (
    CANCELED,
    CANCELLING,
    ERRORED,
    EXPIRED,
    IN_PROGRESS,
    SUCCEEDED,
    VALIDATING,
    BatchItem,
    BatchJob,
    shuffled,
    start_job,
)
from datamill.simulator.online import Answerer, check_api_key
from datamill.simulator.openai_api import answer_chat, answer_embeddings
from datamill.simulator.state import STATE_KEY, SimulatorState, StoredFile, new_id
from datamill.simulator.wire import OPENAI, dumps, json_response, presented_api_key

ENDPOINTS: dict[str, Answerer] = {
    "/v1/chat/completions": answer_chat,
    "/v1/embeddings": answer_embeddings,
}
INPUT_ERROR_CODES = (
    "file_too_large",
    "too_many_lines",
    "invalid_json_line",
    "missing_required_parameter",
    "duplicate_custom_id",
    "invalid_method",
    "invalid_url",
    "model_mismatch",
)
MAX_REPORTED_ERRORS = 1000
_DAY = 24 * 3600


@dataclass
class OpenAIBatch:
    """OpenAI's view of a batch job: the job plus the fields only OpenAI has."""

    id: str
    job: BatchJob
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    output_file_id: str | None = None
    error_file_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        job = self.job
        created = int(job.created_at)
        times = {name: int(stamp) for name, stamp in job.times.items()}
        errors = None
        if job.validation_errors:
            errors = {"object": "list", "data": job.validation_errors}
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": job.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": created,
            "in_progress_at": times.get(IN_PROGRESS),
            "expires_at": created + int(job.expiry_seconds if job.expiry_seconds is not None else _DAY),
            "finalizing_at": times.get("finalizing"),
            "completed_at": times.get("completed"),
            "failed_at": times.get("failed"),
            "expired_at": times.get("expired"),
            "cancelling_at": times.get(CANCELLING),
            "cancelled_at": times.get("cancelled"),
            "request_counts": {
                "total": 0 if job.phase == VALIDATING else len(job.items),
                "completed": job.succeeded,
                "failed": job.errored,
            },
            "metadata": self.metadata,
        }


def validate_input_file(
    data: bytes, endpoint: str, max_lines: int, max_bytes: int
) -> tuple[list[BatchItem], list[dict[str, Any]]]:
    """Parse a batch input file into items, or return the errors that make the batch fail."""
    if len(data) > max_bytes:
        return [], [_input_error("file_too_large", f"The input file exceeds the {max_bytes} byte limit.")]
    lines = data.split(b"\n")
    if sum(1 for line in lines if line.strip()) > max_lines:
        return [], [_input_error("too_many_lines", f"The input file has more than {max_lines} requests.")]
    items: list[BatchItem] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[Any] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        problem = _check_line(raw, endpoint, seen, models)
        if isinstance(problem, BatchItem):
            items.append(problem)
        elif len(errors) < MAX_REPORTED_ERRORS:
            code, message = problem
            errors.append(_input_error(code, message, number))
    if not items and not errors:
        errors.append(_input_error("invalid_json_line", "The input file is empty.", None))
    return items, errors


def _check_line(raw: bytes, endpoint: str, seen: set[str], models: set[Any]) -> BatchItem | tuple[str, str]:
    try:
        line = json.loads(raw)
    except ValueError:
        return "invalid_json_line", "This line is not parseable as valid JSON."
    if not isinstance(line, dict):
        return "invalid_json_line", "This line is not a JSON object."
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "Missing required parameter: 'custom_id'."
    if custom_id in seen:
        return "duplicate_custom_id", f"The custom_id '{custom_id}' is used more than once in this file."
    seen.add(custom_id)
    if line.get("method") != "POST":
        return "invalid_method", "The method of this request must be POST."
    if line.get("url") != endpoint:
        return "invalid_url", f"The URL of this request does not match the batch endpoint {endpoint}."
    body = line.get("body")
    if not isinstance(body, dict):
        return "missing_required_parameter", "Missing required parameter: 'body'."
    models.add(body.get("model"))
    if len(models) > 1:
        return "model_mismatch", "All requests of a batch must use the same model."
    return BatchItem(custom_id, body)


def _input_error(code: str, message: str, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _result_files(batch: OpenAIBatch, job: BatchJob, state: SimulatorState) -> None:
    """Write the output and error files of an ended job (its ``on_end``)."""
    done = [r for r in job.results if r.outcome == SUCCEEDED]
    failed = [r for r in job.results if r.outcome != SUCCEEDED]
    seed = f"{state.config.seed}:{job.serial}"
    if done:
        lines = [_output_line(r.custom_id, 200, r.response, None) for r in shuffled(done, seed + ":out")]
        batch.output_file_id = _store_jsonl(state, f"{batch.id}_output.jsonl", lines).id
    if failed:
        lines = [
            _error_line(r.custom_id, r.outcome, r.status_code, r.message)
            for r in shuffled(failed, seed + ":err")
        ]
        batch.error_file_id = _store_jsonl(state, f"{batch.id}_error.jsonl", lines).id


def _output_line(custom_id: str, status: int, body: Any, error: dict[str, str] | None) -> dict[str, Any]:
    response = None
    if body is not None:
        response = {"status_code": status, "request_id": "req_" + secrets.token_hex(16), "body": body}
    return {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": response,
        "error": error,
    }


def _error_line(custom_id: str, outcome: str, status: int | None, message: str | None) -> dict[str, Any]:
    if outcome == ERRORED:
        kind = "server_error" if status == 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return _output_line(custom_id, status or 500, body, {"code": kind, "message": message or ""})
    if outcome == EXPIRED:
        error = {
            "code": "batch_expired",
            "message": "This request could not be executed before the batch expired.",
        }
    elif outcome == CANCELED:
        error = {
            "code": "batch_cancelled",
            "message": "This request was not executed because the batch was cancelled.",
        }
    else:
        error = {"code": outcome, "message": message or outcome}
    return _output_line(custom_id, 0, None, error)


def _store_jsonl(state: SimulatorState, filename: str, lines: list[dict[str, Any]]) -> StoredFile:
    data = b"".join(dumps(line) + b"\n" for line in lines)
    return state.add_file(filename, "batch_output", data, count=False)


async def create_batch(request: web.Request) -> web.Response:
    """``POST /v1/batches``: starts ``validating``; a bad input file fails it a moment later.

    With ``batch_create_delay_seconds`` the batch comes into existence only after that delay,
    whether or not the client still waits for the answer: a create the client gave up on may
    still land, as with a real provider.
    """
    state = request.app[STATE_KEY]
    delay = state.config.batch_create_delay_seconds
    if delay <= 0:
        return await _create_batch_now(request)
    await request.read()  # kept by aiohttp for the handler, even if the client goes away

    async def later() -> web.Response:
        await asyncio.sleep(delay)
        return await _create_batch_now(request)

    return await asyncio.shield(state.spawn(later()))


async def _create_batch_now(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    try:
        body = await request.json()
    except ValueError:
        return OPENAI.bad_request("The request body is not valid JSON.")
    if not isinstance(body, dict):
        return OPENAI.bad_request("The request body must be a JSON object.")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        return OPENAI.bad_request(
            f"Unsupported endpoint {endpoint!r}; use one of {sorted(ENDPOINTS)}.", "endpoint"
        )
    if body.get("completion_window") != "24h":
        return OPENAI.bad_request("completion_window must be '24h'.", "completion_window")
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(isinstance(v, str) for v in metadata.values())
    ):
        return OPENAI.bad_request("metadata must be an object of at most 16 string values.", "metadata")
    stored = state.files.get(str(body.get("input_file_id")))
    if stored is None:
        return OPENAI.not_found(f"No such File object: {body.get('input_file_id')}")
    if stored.purpose != "batch":
        return OPENAI.bad_request(
            "The input file must have been uploaded with purpose 'batch'.", "input_file_id"
        )
    config = state.config
    items, errors = validate_input_file(
        stored.data, endpoint, config.openai_batch_max_lines, config.openai_batch_max_bytes
    )
    echo_key = presented_api_key(request) if config.echo_api_key else None
    if echo_key:
        errors = [{**error, "message": f"{error['message']} (key {echo_key})"} for error in errors]
    job = BatchJob(
        serial=state.next_serial(),
        items=items if not errors else [],
        answer=ENDPOINTS[endpoint],
        seed=config.seed,
        expiry_seconds=config.batch_expiry_seconds,
        validation_errors=errors,
        echo_key=echo_key,
    )
    batch = OpenAIBatch(new_id("batch_"), job, endpoint, stored.id, "24h", metadata)
    job.on_end = lambda ended: _result_files(batch, ended, state)
    state.openai_batches[batch.id] = batch
    state.accounting.batches_created += 1
    if not errors:
        state.accounting.batch_requests += len(items)
    start_job(job, state)
    return json_response(batch.to_json())


async def get_batch(request: web.Request) -> web.Response:
    """``GET /v1/batches/{id}``."""
    found = _find_batch(request)
    return found if isinstance(found, web.Response) else json_response(found.to_json())


async def cancel_batch(request: web.Request) -> web.Response:
    """``POST /v1/batches/{id}/cancel``: ``cancelling``, then ``cancelled`` with partial results."""
    found = _find_batch(request)
    if isinstance(found, web.Response):
        return found
    if found.job.status != CANCELLING and not found.job.request_cancel():
        return OPENAI.conflict(f"Cannot cancel a batch with status '{found.job.status}'.")
    return json_response(found.to_json())


async def list_batches(request: web.Request) -> web.Response:
    """``GET /v1/batches?limit=&after=``: newest first, paginated by batch id."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return OPENAI.bad_request("limit must be an integer.", "limit")
    if not 1 <= limit <= 100:
        return OPENAI.bad_request("limit must be between 1 and 100.", "limit")
    ids = list(reversed(state.openai_batches))
    start = 0
    after = request.query.get("after")
    if after is not None:
        if after not in state.openai_batches:
            return OPENAI.not_found(f"No such Batch object: {after}")
        start = ids.index(after) + 1
    page = [state.openai_batches[i].to_json() for i in ids[start : start + limit]]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(ids),
        }
    )


def _find_batch(request: web.Request) -> OpenAIBatch | web.Response:
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    batch_id = request.match_info["batch_id"]
    batch = state.openai_batches.get(batch_id)
    if batch is None:
        return OPENAI.not_found(f"No such Batch object: {batch_id}")
    return batch


def add_routes(app: web.Application) -> None:
    """Register this module's endpoints on ``app``."""
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", get_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel_batch)
