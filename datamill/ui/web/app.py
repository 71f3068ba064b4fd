"""The Starlette application behind ``datamill ui``: one HTML page and the JSON API it polls.

Endpoints (documented in docs/ui.md) are plain functions that Starlette runs in its thread
pool; each opens its own read-only connection to the state database and closes it, so a
request sees one consistent snapshot and never holds anything a run needs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from datamill.cli.cachedir import status_document
from datamill.core.state import StateDB
from datamill.errors import ConfigError, DatamillError
from datamill.ui.web.details import read_failures, read_jobs, step_details
from datamill.ui.web.discovery import Pipeline, find_pipelines
from datamill.ui.web.plot import read_series, render_svg
from datamill.ui.web.rows import CommitIndexes, read_page, search_rows

log = logging.getLogger("datamill.ui.web")

STATIC = Path(__file__).parent / "static"
MAX_PAGE = 500
#: How long one search request scans before answering with where to continue.
SEARCH_SECONDS = 1.0


class ApiError(Exception):
    """A request the API refuses: its HTTP status and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def json_response(data: Any, status: int = 200) -> Response:
    """JSON via orjson: NaN becomes null, unknown types their ``str``."""
    body = orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status, media_type="application/json")


def create_app(roots: list[Path]) -> Starlette:
    """The application for the pipelines under ``roots``, looked up again on each listing."""
    indexes = CommitIndexes()
    known: dict[str, Pipeline] = {}

    def pipeline(request: Request) -> Pipeline:
        pid = request.path_params["pid"]
        if pid not in known:
            known.update((found.id, found) for found in find_pipelines(roots))
        if pid not in known:
            raise ApiError(404, f"no pipeline {pid} under {', '.join(map(str, roots))}")
        return known[pid]

    def open_state(found: Pipeline) -> closing[StateDB]:
        return closing(StateDB.open_readonly(found.cache.state_path))

    def step_of(request: Request, state: StateDB) -> int:
        step = request.path_params["step"]
        if not 0 <= step < state.step_count():
            raise ApiError(404, f"step {step} is out of range: this cache has {state.step_count()} step(s)")
        return step

    def list_pipelines(request: Request) -> Any:
        found = find_pipelines(roots)
        known.update((p.id, p) for p in found)
        root = Path(os.path.commonpath([r.resolve() for r in roots]))
        return {"roots": [str(r) for r in roots], "pipelines": [p.describe(root) for p in found]}

    def status(request: Request) -> Any:
        return status_document(pipeline(request).cache)

    def overview(request: Request) -> Any:
        found = pipeline(request)
        document = status_document(found.cache)
        with open_state(found) as state:
            started = (document["run"] or {}).get("started_at")
            return {"status": document, "details": step_details(state, started), "jobs": read_jobs(state)}

    def plot(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in ("svg", "json"):
            raise ApiError(404, f"no plot.{kind}: ask for plot.svg or plot.json")
        found = pipeline(request)
        document = status_document(found.cache)
        with open_state(found) as state:
            series = read_series(state, document["run"])
        if kind == "svg":
            return Response(
                render_svg(series), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
            )
        return json_response(series)

    def rows(request: Request) -> Any:
        found = pipeline(request)
        with open_state(found) as state:
            step = step_of(request, state)
            limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
            query = request.query_params.get("q", "")
            if query:
                start = _int_param(request, "start", 0, 0, None)
                page = search_rows(
                    found.cache, state, indexes, step, query, start=start, limit=limit, seconds=SEARCH_SECONDS
                )
            else:
                offset = _int_param(request, "offset", 0, 0, None)
                page = read_page(found.cache, state, indexes, step, offset, limit)
            return page.as_dict()

    def failures(request: Request) -> Any:
        found = pipeline(request)
        with open_state(found) as state:
            step = step_of(request, state)
            offset = _int_param(request, "offset", 0, 0, None)
            limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
            return read_failures(found.cache, state, indexes, step, offset, limit)

    def jobs(request: Request) -> Any:
        with open_state(pipeline(request)) as state:
            return {"jobs": read_jobs(state)}

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/pipelines", _json(list_pipelines)),
        Route("/api/pipelines/{pid}/status", _json(status)),
        Route("/api/pipelines/{pid}/overview", _json(overview)),
        Route("/api/pipelines/{pid}/plot.{kind:str}", _json(plot)),
        Route("/api/pipelines/{pid}/jobs", _json(jobs)),
        Route("/api/pipelines/{pid}/steps/{step:int}/rows", _json(rows)),
        Route("/api/pipelines/{pid}/steps/{step:int}/failures", _json(failures)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def _json(handler: Callable[[Request], Any]) -> Callable[[Request], Response]:
    """A sync endpoint answering JSON; datamill errors and refused requests become JSON errors."""

    def endpoint(request: Request) -> Response:
        try:
            result = handler(request)
        except ApiError as exc:
            return json_response({"error": str(exc)}, exc.status)
        except (DatamillError, OSError) as exc:
            log.warning("%s: %s", request.url.path, exc)
            return json_response({"error": str(exc)}, 503)
        return result if isinstance(result, Response) else json_response(result)

    return endpoint


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name}={raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        raise ApiError(400, f"{name}={value} is out of range ({low}..{high if high is not None else ''})")
    return value


def serve(roots: list[Path], host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve the page until interrupted (uvicorn, access log off); ``announce`` gets its URL
    once the address is bound (``port`` 0 picks a free one)."""
    import uvicorn

    listener = _bind(host, port)
    bound_port = listener.getsockname()[1]
    announce(f"http://{f'[{host}]' if ':' in host else host}:{bound_port}/")
    config = uvicorn.Config(create_app(roots), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port} ({exc}); choose another --port or --host") from None
    return listener
