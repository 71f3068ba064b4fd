"""A provider simulator: OpenAI- and Anthropic-compatible HTTP, Files and Batches included.

Tests, the demo and the benchmarks talk to it over loopback instead of a real provider. Its
replies are deterministic functions of the request (``replies.py``), its misbehaviour is set by
knobs (``SimulatorConfig``), and its counters (``GET /_sim/stats``) show whether a client ever
paid twice for the same call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datamill._lazy import lazy_exports

#: Resolved on first access, so reading the knobs (``datamill simulate --help``) loads no aiohttp.
_EXPORTS = {
    "SimulatorConfig": "datamill.simulator.config",
    "SimulatorHandle": "datamill.simulator.server",
    "create_app": "datamill.simulator.app",
    "request_hash": "datamill.simulator.replies",
    "run_simulator": "datamill.simulator.server",
    "run_simulator_process": "datamill.simulator.server",
}

__getattr__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from datamill.simulator.app import create_app
    from datamill.simulator.config import SimulatorConfig
    from datamill.simulator.replies import request_hash
    from datamill.simulator.server import SimulatorHandle, run_simulator, run_simulator_process

__all__ = [
    "SimulatorConfig",
    "SimulatorHandle",
    "create_app",
    "request_hash",
    "run_simulator",
    "run_simulator_process",
]
