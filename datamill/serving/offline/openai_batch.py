"""OpenAI's Batch API: a JSONL file uploaded through ``/files``, run by ``/batches``.

Each chunk is one file named ``datamill-{chunk_id}.jsonl`` (so an upload whose id was never
recorded can be found again) and one batch tagged ``metadata={"datamill_chunk": chunk_id}``
(so a batch whose id was never recorded can be adopted). Results come back as an output file
and an error file whose lines are in no particular order; they are joined on ``custom_id``.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from datamill.serving.offline.provider import (
    BatchProvider,
    BatchProviderError,
    JobInfo,
    LineResult,
    cache_entry,
    iter_result_lines,
)
from datamill.serving.types import GenericRequest

CHAT_ENDPOINT = "/v1/chat/completions"
#: Jobs listed before the chunk's intent time, less this slack for clock skew, are not read.
_CLOCK_SLACK = 3600.0
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_LINE_HEAD = b'{"custom_id":"'
_LINE_MID = ('","method":"POST","url":"' + CHAT_ENDPOINT + '","body":').encode()

_STATUS = {
    "validating": "validating",
    "in_progress": "in_progress",
    "finalizing": "finalizing",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
}


def file_name(chunk_id: str) -> str:
    return f"datamill-{chunk_id}.jsonl"


class OpenAIBatchProvider(BatchProvider):
    """OpenAI Batch API limits: 50,000 requests and 200 MB per input file."""

    name = "openai"
    max_requests_per_job = 50_000
    max_bytes_per_job = 200 * 1024 * 1024
    needs_upload = True

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def encode_line(self, request: GenericRequest) -> bytes:
        return _LINE_HEAD + request.key.encode() + _LINE_MID + _encode(self.body_fn(request)).encode() + b"}"

    # --- files ---------------------------------------------------------------------------

    async def upload(self, chunk_id: str, payload: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", payload, filename=file_name(chunk_id), content_type="application/jsonl")
        data = await self.request("POST", "/files", data=form, attempts=1)
        return str(data["id"])

    async def find_upload(self, chunk_id: str) -> str | None:
        data = await self.request("GET", "/files", params={"purpose": "batch"})
        wanted = file_name(chunk_id)
        for item in data.get("data", []):
            if item.get("filename") == wanted:
                return str(item["id"])
        return None

    async def file_exists(self, file_id: str) -> bool:
        try:
            await self.request("GET", f"/files/{file_id}")
        except BatchProviderError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- batches -------------------------------------------------------------------------

    async def create_job(
        self, chunk_id: str, *, file_id: str | None = None, payload: bytes | None = None
    ) -> JobInfo:
        assert file_id is not None
        body = {
            "input_file_id": file_id,
            "endpoint": CHAT_ENDPOINT,
            "completion_window": "24h",
            "metadata": {"datamill_chunk": chunk_id},
        }
        return self.parse_job(await self.request("POST", "/batches", json=body, attempts=1))

    async def find_job(
        self, chunk_id: str, *, created_after: float, n_requests: int, known_ids: set[str]
    ) -> JobInfo | None:
        def matches(job: JobInfo) -> bool:
            return job.metadata.get("datamill_chunk") == chunk_id

        return await self.find_listed_job(matches, oldest=created_after - _CLOCK_SLACK)

    def parse_job(self, data: dict[str, Any]) -> JobInfo:
        counts = data.get("request_counts") or {}
        errors = []
        for item in (data.get("errors") or {}).get("data") or []:
            where = f"line {item['line']}: " if item.get("line") else ""
            errors.append(f"{where}{item.get('code')}: {item.get('message')}")
        return JobInfo(
            id=str(data["id"]),
            status=_STATUS.get(str(data.get("status")), str(data.get("status"))),
            total=int(counts.get("total") or 0),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            errors=errors,
            output_ref=data.get("output_file_id"),
            error_ref=data.get("error_file_id"),
            metadata=dict(data.get("metadata") or {}),
            created_at=float(data.get("created_at") or 0),
        )

    # --- results -------------------------------------------------------------------------

    async def results(self, job: JobInfo) -> list[LineResult]:
        out: list[LineResult] = []
        for ref in (job.output_ref, job.error_ref):
            if ref:
                content = await self.request("GET", f"/files/{ref}/content", raw=True)
                out.extend(parse_result_lines(content))
        return out


def parse_result_lines(content: bytes) -> list[LineResult]:
    """Parse an OpenAI batch output or error file (lines in any order)."""
    results: list[LineResult] = []
    for key, line in iter_result_lines(content):
        reply = line.get("response")
        if reply and reply.get("status_code") == 200 and not line.get("error"):
            body = reply.get("body") or {}
            try:
                usage = body.get("usage") or {}
                texts = [choice["message"]["content"] or "" for choice in body["choices"]]
                entry = cache_entry(
                    texts,
                    usage.get("prompt_tokens") or 0,
                    usage.get("completion_tokens") or 0,
                    str(body.get("model", "")),
                )
            except (KeyError, TypeError, AttributeError, ValueError):
                results.append(LineResult(key, error="malformed chat completion in the batch output"))
                continue
            if not texts:
                results.append(LineResult(key, error="chat completion with no choices in the batch output"))
                continue
            results.append(LineResult(key, cached=entry))
            continue
        error = line.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else None
        if not message and reply:
            body_error = (reply.get("body") or {}).get("error") or {}
            message = body_error.get("message") if isinstance(body_error, dict) else None
            message = f"HTTP {reply.get('status_code')}: {message or 'request failed'}"
        code = error.get("code") if isinstance(error, dict) else None
        results.append(LineResult(key, error=f"{code + ': ' if code else ''}{message or 'request failed'}"))
    return results
