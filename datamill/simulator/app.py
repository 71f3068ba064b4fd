"""Assemble the simulator's aiohttp application from its endpoint modules."""

from __future__ import annotations

from aiohttp import web

from datamill.simulator import (
    anthropic_api,
    anthropic_batches,
    control,
    openai_api,
    openai_batches,
    openai_files,
)
from datamill.simulator.config import SimulatorConfig
from datamill.simulator.state import STATE_KEY, SimulatorState

# Uploads and Anthropic batch bodies are checked against the config's own limits; aiohttp's
# cap only has to be above all of them.
_CLIENT_MAX_SIZE = 1 << 30


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A ready-to-serve application simulating OpenAI and Anthropic with ``config``'s knobs."""
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    app[STATE_KEY] = SimulatorState(config or SimulatorConfig())
    for module in (openai_api, openai_files, openai_batches, anthropic_api, anthropic_batches, control):
        module.add_routes(app)
    app.on_cleanup.append(_stop_background_tasks)
    return app


async def _stop_background_tasks(app: web.Application) -> None:
    await app[STATE_KEY].cancel_tasks()
