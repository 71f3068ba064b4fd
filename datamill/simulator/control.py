"""The simulator's own endpoints under ``/_sim``: counters, reset and run-time knobs.

These are for tests and benchmarks, never for the code under test: they need no API key and
are not counted as model calls.
"""

from __future__ import annotations

import json

from aiohttp import web

from datamill.simulator.state import STATE_KEY
from datamill.simulator.wire import json_response


async def get_stats(request: web.Request) -> web.Response:
    """``GET /_sim/stats``; ``?detail=1`` adds the per-client-key counts."""
    detail = request.query.get("detail", "0") not in ("", "0", "false")
    return json_response(request.app[STATE_KEY].accounting.snapshot(detail=detail))


async def reset_stats(request: web.Request) -> web.Response:
    """``POST /_sim/reset``: zero the counters (files and batches stay)."""
    state = request.app[STATE_KEY]
    state.reset_counters()
    return json_response(state.accounting.snapshot())


async def get_config(request: web.Request) -> web.Response:
    """``GET /_sim/config``: every knob's current value."""
    return json_response(request.app[STATE_KEY].config.to_json())


async def update_config(request: web.Request) -> web.Response:
    """``POST /_sim/config`` with a JSON object of knobs; answers the whole new config or 400."""
    state = request.app[STATE_KEY]
    try:
        knobs = json.loads(await request.read())
        if not isinstance(knobs, dict):
            raise ValueError("the body must be a JSON object of knobs")
        config = state.update_config(knobs)
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return json_response({"error": {"message": message, "type": "invalid_request_error"}}, 400)
    return json_response(config.to_json())


def add_routes(app: web.Application) -> None:
    """Register this module's endpoints on ``app``."""
    app.router.add_get("/_sim/stats", get_stats)
    app.router.add_post("/_sim/reset", reset_stats)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_post("/_sim/config", update_config)
