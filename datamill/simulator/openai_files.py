"""OpenAI's Files API: batch input files go up, batch result files come down.

Files live in memory (``SimulatorState.files``). Uploads are counted in ``files_created``; the
output and error files a batch writes are not, since the client did not create them.
"""

from __future__ import annotations

from aiohttp import web

from datamill.simulator.online import check_api_key
from datamill.simulator.state import STATE_KEY, StoredFile
from datamill.simulator.wire import OPENAI, json_response

_UPLOAD_CHUNK = 1 << 20


async def upload_file(request: web.Request) -> web.Response:
    """``POST /v1/files`` (multipart: ``purpose`` and ``file``)."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    if not request.content_type.startswith("multipart/"):
        return OPENAI.bad_request("Uploads must be multipart/form-data with 'purpose' and 'file'.")
    purpose: str | None = None
    filename: str | None = None
    data: bytes | None = None
    limit = state.config.max_upload_bytes
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if part.name == "purpose":
            purpose = await part.text()
        elif part.name == "file":
            filename = part.filename or "upload.jsonl"
            chunks = bytearray()
            while chunk := await part.read_chunk(_UPLOAD_CHUNK):
                chunks += chunk
                if len(chunks) > limit:
                    return OPENAI.bad_request(f"File is larger than the {limit} byte upload limit.", "file")
            data = bytes(chunks)
    if not purpose:
        return OPENAI.bad_request("Missing required parameter: 'purpose'.", "purpose")
    if data is None or filename is None:
        return OPENAI.bad_request("Missing required parameter: 'file'.", "file")
    return json_response(state.add_file(filename, purpose, data).to_json())


async def list_files(request: web.Request) -> web.Response:
    """``GET /v1/files`` (optionally filtered by ``purpose``), newest first."""
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    purpose = request.query.get("purpose")
    files = [f.to_json() for f in reversed(state.files.values()) if purpose is None or f.purpose == purpose]
    return json_response({"object": "list", "data": files, "has_more": False})


async def get_file(request: web.Request) -> web.Response:
    """``GET /v1/files/{id}``."""
    found = _find_file(request)
    return found if isinstance(found, web.Response) else json_response(found.to_json())


async def get_file_content(request: web.Request) -> web.Response:
    """``GET /v1/files/{id}/content``: the raw bytes."""
    found = _find_file(request)
    if isinstance(found, web.Response):
        return found
    return web.Response(body=found.data, content_type="application/octet-stream")


async def delete_file(request: web.Request) -> web.Response:
    """``DELETE /v1/files/{id}``."""
    found = _find_file(request)
    if isinstance(found, web.Response):
        return found
    del request.app[STATE_KEY].files[found.id]
    return json_response({"id": found.id, "object": "file", "deleted": True})


def _find_file(request: web.Request) -> StoredFile | web.Response:
    state = request.app[STATE_KEY]
    refused = check_api_key(request, state, OPENAI)
    if refused is not None:
        return refused
    file_id = request.match_info["file_id"]
    stored = state.files.get(file_id)
    if stored is None:
        return OPENAI.not_found(f"No such File object: {file_id}")
    return stored


def add_routes(app: web.Application) -> None:
    """Register this module's endpoints on ``app``."""
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_delete("/v1/files/{file_id}", delete_file)
    app.router.add_get("/v1/files/{file_id}/content", get_file_content)
