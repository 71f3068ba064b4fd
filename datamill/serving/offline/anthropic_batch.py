"""Anthropic's Message Batches API: requests sent inline, JSONL results downloaded once ended.

Message Batches carry no metadata, so a batch created for a chunk whose id was never recorded
(a crash between the create call and the record) is recognised by what it must look like: it
was created after the chunk's intent was recorded, holds exactly the chunk's number of
requests, and is not recorded for any other chunk. The cache lock makes chunk creation
sequential, so at most one such batch can exist per crash.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from datamill.serving.offline.provider import (
    BatchProvider,
    JobInfo,
    LineResult,
    cache_entry,
    iter_result_lines,
)
from datamill.serving.types import GenericRequest

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_CLOCK_SLACK = 120.0
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def anthropic_body(request: GenericRequest) -> dict[str, Any]:
    """A Messages API body for a provider-neutral request (system messages lifted out)."""
    system = [m["content"] for m in request.messages if m.get("role") == "system"]
    messages = [m for m in request.messages if m.get("role") != "system"]
    body: dict[str, Any] = {"model": request.model, "messages": messages, **request.params}
    body.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    if system:
        body["system"] = "\n\n".join(str(s) for s in system)
    return body


def _timestamp(value: Any) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class AnthropicBatchProvider(BatchProvider):
    """Anthropic limits: 100,000 requests and 256 MB per batch."""

    name = "anthropic"
    max_requests_per_job = 100_000
    max_bytes_per_job = 256 * 1024 * 1024
    needs_upload = False
    jobs_path = "/v1/messages/batches"
    list_cursor_param = "after_id"

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def encode_line(self, request: GenericRequest) -> bytes:
        return (
            b'{"custom_id":"'
            + request.key.encode()
            + b'","params":'
            + _encode(self.body_fn(request)).encode()
            + b"}"
        )

    def chunk_payload(self, lines: list[bytes]) -> bytes:
        return b'{"requests":[' + b",".join(lines) + b"]}"

    def payload_overhead(self, n_lines: int) -> int:
        return n_lines + 16

    async def create_job(
        self, chunk_id: str, *, file_id: str | None = None, payload: bytes | None = None
    ) -> JobInfo:
        assert payload is not None
        data = await self.request(
            "POST",
            "/v1/messages/batches",
            data=payload,
            headers={"Content-Type": "application/json"},
            attempts=1,
        )
        return self.parse_job(data)

    async def find_job(
        self, chunk_id: str, *, created_after: float, n_requests: int, known_ids: set[str]
    ) -> JobInfo | None:
        oldest = created_after - _CLOCK_SLACK

        def matches(job: JobInfo) -> bool:
            return job.id not in known_ids and job.created_at >= oldest and job.total == n_requests

        return await self.find_listed_job(matches, oldest=oldest)

    def parse_job(self, data: dict[str, Any]) -> JobInfo:
        counts = data.get("request_counts") or {}
        succeeded = int(counts.get("succeeded") or 0)
        errored = int(counts.get("errored") or 0)
        canceled = int(counts.get("canceled") or 0)
        expired = int(counts.get("expired") or 0)
        processing = int(counts.get("processing") or 0)
        raw = data.get("processing_status")
        if raw == "ended":
            if data.get("cancel_initiated_at"):
                status = "cancelled"
            elif expired:
                status = "expired"
            else:
                status = "completed"
        elif raw == "canceling":
            status = "cancelling"
        else:
            status = "in_progress"
        return JobInfo(
            id=str(data["id"]),
            status=status,
            total=succeeded + errored + canceled + expired + processing,
            completed=succeeded,
            failed=errored + canceled + expired,
            output_ref=data.get("results_url") or f"/v1/messages/batches/{data['id']}/results",
            created_at=_timestamp(data.get("created_at")),
        )

    async def results(self, job: JobInfo) -> list[LineResult]:
        ref = job.output_ref or f"/v1/messages/batches/{job.id}/results"
        return parse_result_lines(await self.request("GET", ref, raw=True))


def parse_result_lines(content: bytes) -> list[LineResult]:
    results: list[LineResult] = []
    for key, line in iter_result_lines(content):
        result = line.get("result") or {}
        kind = result.get("type")
        if kind == "succeeded":
            message = result.get("message") or {}
            try:
                texts = ["".join(b.get("text", "") for b in message["content"] if b.get("type") == "text")]
                usage = message.get("usage") or {}
                entry = cache_entry(
                    texts,
                    usage.get("input_tokens") or 0,
                    usage.get("output_tokens") or 0,
                    str(message.get("model", "")),
                )
            except (KeyError, TypeError, AttributeError, ValueError):
                results.append(LineResult(key, error="malformed message in the batch results"))
                continue
            results.append(LineResult(key, cached=entry))
        elif kind == "errored":
            error = result.get("error") or {}
            inner = error.get("error") if isinstance(error.get("error"), dict) else error
            results.append(LineResult(key, error=f"{inner.get('type', 'error')}: {inner.get('message', '')}"))
        else:
            results.append(LineResult(key, error=f"request {kind or 'failed'} in the batch"))
    return results
