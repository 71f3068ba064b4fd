"""The one path every online model call takes: auth, rate limit, answer, latency, injected faults.

OpenAI chat, OpenAI embeddings and Anthropic messages differ only in how they answer a body
(an ``Answerer``) and how they phrase errors (a ``Wire``); the order of checks, the accounting
and the knobs are shared here so they cannot drift apart. The order matters:

1. a wrong API key answers 401;
2. a call past the rate limit answers 429 before its body is even read (cheap to refuse);
3. an unparseable body answers 400; an unknown model 404 (with ``reject_unknown_models``);
4. the answer is computed, the latency slept, then one random draw picks drop, 500, malformed
   or the real 200.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from datamill.simulator.faults import DROP, FAIL, OK, draw_latency, draw_outcome
from datamill.simulator.replies import InvalidRequest
from datamill.simulator.state import STATE_KEY, SimulatorState
from datamill.simulator.wire import Wire, json_response, presented_api_key

CLIENT_KEY_HEADER = "X-Datamill-Request-Key"


@dataclass
class Answer:
    """A successful reply to one model call, with what accounting needs to know about it."""

    request_hash: str
    body: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int


Answerer = Callable[[Any, SimulatorState], Answer]


def check_api_key(request: web.Request, state: SimulatorState, wire: Wire) -> web.Response | None:
    """The 401 to send when ``require_api_key`` is set and the request's key differs, else None."""
    required = state.config.require_api_key
    if required is None:
        return None
    presented = presented_api_key(request)
    if presented == required:
        return None
    state.accounting.unauthorized += 1
    return wire.unauthorized(presented, echo=bool(state.config.echo_api_key))


async def handle_model_call(request: web.Request, wire: Wire, answer: Answerer) -> web.StreamResponse:
    """Serve one online model call with every knob applied (see the module docstring)."""
    accounting = request.app[STATE_KEY].accounting
    accounting.call_started()
    try:
        return await _serve_model_call(request, wire, answer)
    finally:
        accounting.call_ended()


async def _serve_model_call(request: web.Request, wire: Wire, answer: Answerer) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    config = state.config
    accounting = state.accounting
    accounting.requests += 1
    refused = check_api_key(request, state, wire)
    if refused is not None:
        return refused
    limiter = state.limiter
    if limiter is not None:
        wait = limiter.try_acquire()
        if wait > 0.0:
            accounting.rate_limited += 1
            return wire.rate_limited(wait, config.rpm_limit or 0)
    try:
        body = json.loads(await request.read())
    except ValueError:
        accounting.bad_requests += 1
        return wire.bad_request("The request body is not valid JSON.")
    if (
        config.reject_unknown_models
        and isinstance(body, dict)
        and isinstance(body.get("model"), str)
        and body["model"] not in config.models
    ):
        accounting.bad_requests += 1
        return wire.model_not_found(body["model"])
    try:
        result = answer(body, state)
    except InvalidRequest as exc:
        accounting.bad_requests += 1
        return wire.bad_request(str(exc))
    accounting.record_seen(result.request_hash)
    rng = state.rng
    delay = draw_latency(rng, config)
    if delay > 0.0:
        await asyncio.sleep(delay)
    outcome = draw_outcome(rng, config)
    if outcome == OK:
        accounting.record_answer(
            result.request_hash,
            request.headers.get(CLIENT_KEY_HEADER),
            result.prompt_tokens,
            result.completion_tokens,
        )
        return json_response(result.body, headers=_limit_headers(state, wire))
    if outcome == DROP:
        accounting.dropped += 1
        return drop_connection(request)
    if outcome == FAIL:
        accounting.server_errors += 1
        return wire.server_error()
    accounting.malformed += 1
    return wire.malformed(rng, str(result.body.get("id", "sim")))


def _limit_headers(state: SimulatorState, wire: Wire) -> dict[str, str] | None:
    """The rate-limit headers of a reply, as providers send them on every answer."""
    limiter = state.limiter
    if limiter is None or state.config.rpm_limit is None:
        return None
    remaining, reset = limiter.remaining()
    return wire.rate_limit_headers(state.config.rpm_limit, remaining, reset)


def drop_connection(request: web.Request) -> web.Response:
    """Abort the TCP connection so the client sees a server disconnect and no response.

    The returned response is never written: aiohttp finds the transport closed and gives up
    quietly, which is exactly what a dropped connection looks like from the client.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)
