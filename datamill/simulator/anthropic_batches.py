"""Anthropic's Message Batches API: inline requests in, shuffled JSONL results out.

Unlike OpenAI, Anthropic checks a batch when it is created: too many requests, too many bytes,
a malformed or repeated ``custom_id`` answer 400 at once. Params are checked per request while
the batch runs, so a bad one ends as an ``errored`` result. ``processing_status`` goes
``in_progress`` -> (``canceling``) -> ``ended``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from datamill.simulator.anthropic_api import answer_message
from datamill.simulator.batch_engine import (
    CANCELLING,
    ENDED,
    ERRORED,
    IN_PROGRESS,
    SUCCEEDED,
    BatchItem,
    BatchJob,
    ItemResult,
    shuffled,
    start_job,
)
from datamill.simulator.online import check_api_key
from datamill.simulator.state import STATE_KEY, SimulatorState, new_id
from datamill.simulator.wire import ANTHROPIC, dumps, json_response, presented_api_key

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DAY = 24 * 3600


@dataclass
class AnthropicBatch:
    """Anthropic's view of a batch job; ``results`` is the JSONL body once it has ended."""

    id: str
    job: BatchJob
    results: bytes | None = None
    outcome_counts: Counter[str] = field(default_factory=Counter)

    def to_json(self, origin: str) -> dict[str, Any]:
        job = self.job
        ended = job.phase == ENDED
        expiry = job.expiry_seconds if job.expiry_seconds is not None else _DAY
        counts = self.outcome_counts
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": "ended"
            if ended
            else "canceling"
            if job.phase == CANCELLING
            else IN_PROGRESS,
            "request_counts": {
                "processing": 0 if ended else job.unfinished,
                "succeeded": job.succeeded,
                "errored": job.errored,
                "canceled": counts["canceled"],
                "expired": counts["expired"],
            },
            "ended_at": _rfc3339(job.times.get(job.ending or "")) if ended else None,
            "created_at": _rfc3339(job.created_at),
            "expires_at": _rfc3339(job.created_at + expiry),
            "cancel_initiated_at": _rfc3339(job.times.get(CANCELLING)),
            "archived_at": None,
            "results_url": f"{origin}/v1/messages/batches/{self.id}/results" if ended else None,
        }


def _rfc3339(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")


def _write_results(batch: AnthropicBatch, job: BatchJob, state: SimulatorState) -> None:
    """Format every request's result as shuffled JSONL (the job's ``on_end``)."""
    batch.outcome_counts = Counter(r.outcome for r in job.results)
    lines = [_result_line(r) for r in shuffled(job.results, f"{state.config.seed}:{job.serial}:results")]
    batch.results = b"".join(dumps(line) + b"\n" for line in lines)


def _result_line(result: ItemResult) -> dict[str, Any]:
    if result.outcome == SUCCEEDED:
        outcome: dict[str, Any] = {"type": "succeeded", "message": result.response}
    elif result.outcome == ERRORED:
        kind = "api_error" if result.status_code == 500 else "invalid_request_error"
        outcome = {
            "type": "errored",
            "error": {"type": "error", "error": {"type": kind, "message": result.message}},
        }
    else:
        outcome = {"type": result.outcome}
    return {"custom_id": result.custom_id, "result": outcome}


def _parse_requests(body: Any, max_requests: int) -> list[BatchItem] | str:
    """The batch's items, or why the whole batch is refused."""
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
        return "requests: a non-empty array of {custom_id, params} is required"
    requests = body["requests"]
    if len(requests) > max_requests:
        return f"requests: a batch may hold at most {max_requests} requests, got {len(requests)}"
    items: list[BatchItem] = []
    seen: set[str] = set()
    for index, entry in enumerate(requests):
        custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            return f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if custom_id in seen:
            return f"requests.{index}.custom_id: custom_id '{custom_id}' is not unique within the batch"
        seen.add(custom_id)
        if not isinstance(entry.get("params"), dict):
            return f"requests.{index}.params: Field required"
        items.append(BatchItem(custom_id, entry["params"]))
    return items


async def create_batch(request: web.Request) -> web.Response:
    """``POST /v1/messages/batches``."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, ANTHROPIC)
    if refused is not None:
        return refused
    config = state.config
    raw = await request.read()
    if len(raw) > config.anthropic_batch_max_bytes:
        return ANTHROPIC.bad_request(f"The batch exceeds the {config.anthropic_batch_max_bytes} byte limit.")
    try:
        body = json.loads(raw)
    except ValueError:
        return ANTHROPIC.bad_request("The request body is not valid JSON.")
    items = _parse_requests(body, config.anthropic_batch_max_requests)
    if isinstance(items, str):
        return ANTHROPIC.bad_request(items)
    job = BatchJob(
        serial=state.next_serial(),
        items=items,
        answer=answer_message,
        seed=config.seed,
        expiry_seconds=config.batch_expiry_seconds,
        phase=IN_PROGRESS,
        echo_key=presented_api_key(request) if config.echo_api_key else None,
    )
    batch = AnthropicBatch(new_id("msgbatch_"), job)
    job.on_end = lambda ended: _write_results(batch, ended, state)
    state.anthropic_batches[batch.id] = batch
    state.accounting.batches_created += 1
    state.accounting.batch_requests += len(items)
    start_job(job, state)
    return json_response(batch.to_json(_origin(request)))


async def get_batch(request: web.Request) -> web.Response:
    """``GET /v1/messages/batches/{id}``."""
    found = _find_batch(request)
    return found if isinstance(found, web.Response) else json_response(found.to_json(_origin(request)))


async def get_results(request: web.Request) -> web.Response:
    """``GET /v1/messages/batches/{id}/results``: JSONL, available once the batch has ended."""
    found = _find_batch(request)
    if isinstance(found, web.Response):
        return found
    if found.results is None:
        return ANTHROPIC.not_found(f"Results for batch {found.id} are not available until it has ended.")
    return web.Response(body=found.results, content_type="application/x-jsonl")


async def cancel_batch(request: web.Request) -> web.Response:
    """``POST /v1/messages/batches/{id}/cancel``."""
    found = _find_batch(request)
    if isinstance(found, web.Response):
        return found
    if found.job.phase != CANCELLING and not found.job.request_cancel():
        return ANTHROPIC.conflict(f"Batch {found.id} cannot be canceled: it is already {found.job.status}.")
    return json_response(found.to_json(_origin(request)))


async def list_batches(request: web.Request) -> web.Response:
    """``GET /v1/messages/batches?limit=&after_id=&before_id=``: newest first."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, ANTHROPIC)
    if refused is not None:
        return refused
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return ANTHROPIC.bad_request("limit: must be an integer")
    if not 1 <= limit <= 1000:
        return ANTHROPIC.bad_request("limit: must be between 1 and 1000")
    ids = list(reversed(state.anthropic_batches))
    after_id = request.query.get("after_id")
    before_id = request.query.get("before_id")
    for cursor in (after_id, before_id):
        if cursor is not None and cursor not in state.anthropic_batches:
            return ANTHROPIC.not_found(f"No batch {cursor}")
    if before_id is not None:
        end = ids.index(before_id)
        start = max(0, end - limit)
        has_more = start > 0
    else:
        start = ids.index(after_id) + 1 if after_id is not None else 0
        end = start + limit
        has_more = end < len(ids)
    origin = _origin(request)
    page = [state.anthropic_batches[i].to_json(origin) for i in ids[start:end]]
    return json_response(
        {
            "data": page,
            "has_more": has_more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    )


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _find_batch(request: web.Request) -> AnthropicBatch | web.Response:
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, ANTHROPIC)
    if refused is not None:
        return refused
    batch_id = request.match_info["batch_id"]
    batch = state.anthropic_batches.get(batch_id)
    if batch is None:
        return ANTHROPIC.not_found(f"No batch {batch_id}")
    return batch


def add_routes(app: web.Application) -> None:
    """Register this module's endpoints on ``app``."""
    app.router.add_post("/v1/messages/batches", create_batch)
    app.router.add_get("/v1/messages/batches", list_batches)
    app.router.add_get("/v1/messages/batches/{batch_id}", get_batch)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", get_results)
    app.router.add_post("/v1/messages/batches/{batch_id}/cancel", cancel_batch)
