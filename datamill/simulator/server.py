"""Start and stop a simulator: in a background thread, in a subprocess, or in the foreground.

``run_simulator`` is for tests (cheap, in-process, its own event loop in a thread);
``run_simulator_process`` is for benchmarks and for tests that kill pipeline processes, so the
simulator neither shares a CPU-bound interpreter with the client nor dies with it. Both yield a
``SimulatorHandle`` that speaks to the server over HTTP only, so it means the same in both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from aiohttp import web

from datamill.errors import DatamillError
from datamill.simulator.app import create_app
from datamill.simulator.config import SimulatorConfig
from datamill.simulator.knob_flags import DEFAULT_HOST, config_to_argv

logger = logging.getLogger(__name__)

LISTENING_PREFIX = "datamill simulator listening on "
_SHUTDOWN_TIMEOUT = 0.5
# Loopback only: an environment's HTTP proxy must never see the handle's control calls.
_LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SimulatorStartError(DatamillError):
    """The simulator did not come up (port taken, bad knob, subprocess died); the message says why."""


class SimulatorHandle:
    """The address of a running simulator and its control calls (``/_sim/...`` over HTTP)."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.base_url = base_url
        self.process = process

    @property
    def openai_base(self) -> str:
        """``base_url + "/v1"``: the ``base_url`` to give an OpenAI client."""
        return self.base_url + "/v1"

    @property
    def anthropic_base(self) -> str:
        """The ``base_url`` to give an Anthropic client (it appends ``/v1`` itself)."""
        return self.base_url

    def stats(self, detail: bool = False) -> dict[str, Any]:
        """The accounting counters (``GET /_sim/stats``)."""
        return self._call("GET", "/_sim/stats?detail=1" if detail else "/_sim/stats")

    def reset(self) -> None:
        """Zero the counters (``POST /_sim/reset``); files and batches stay."""
        self._call("POST", "/_sim/reset", {})

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time; returns the whole new config. Raises ``ValueError`` for a bad knob."""
        return self._call("POST", "/_sim/config", knobs)

    def config(self) -> dict[str, Any]:
        """Every knob's current value."""
        return self._call("GET", "/_sim/config")

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with _LOOPBACK_OPENER.open(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", {}).get("message", str(exc))
            raise ValueError(detail) from None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (faster), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def start_server(
    config: SimulatorConfig, host: str = DEFAULT_HOST, port: int = 0
) -> tuple[web.AppRunner, str]:
    """Bind and start serving on the running loop; returns the runner and the base URL."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SimulatorStartError(f"cannot bind the simulator to {host}:{port}: {exc}") from exc
    bound_port = runner.addresses[0][1]
    shown_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown_host}:{bound_port}"


def serve_forever(config: SimulatorConfig, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; ``on_ready(base_url)`` once listening."""

    async def serve() -> None:
        runner, url = await start_server(config, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            on_ready(url)
            await stop.wait()
        finally:
            await runner.cleanup()

    loop = new_event_loop()
    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()


@contextmanager
def run_simulator(config: SimulatorConfig | None = None, **knobs: Any) -> Iterator[SimulatorHandle]:
    """Run a simulator on 127.0.0.1 and a free port in a background thread for the ``with`` block."""
    config = (config or SimulatorConfig()).with_knobs(**knobs)
    loop = new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="datamill-simulator", daemon=True)
    thread.start()
    try:
        runner, url = asyncio.run_coroutine_threadsafe(start_server(config), loop).result(timeout=30)
        try:
            yield SimulatorHandle(url)
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@contextmanager
def run_simulator_process(
    config: SimulatorConfig | None = None, *, startup_timeout: float = 30.0, **knobs: Any
) -> Iterator[SimulatorHandle]:
    """Run ``python -m datamill.simulator --port 0`` as a subprocess for the ``with`` block.

    The port is read from the first line the child prints; the child is terminated (then
    killed, if it lingers) on exit. ``handle.process`` is the ``Popen``.
    """
    config = (config or SimulatorConfig()).with_knobs(**knobs)
    command = [sys.executable, "-m", "datamill.simulator", "--host", DEFAULT_HOST, "--port", "0"]
    command += config_to_argv(config)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        url = _read_listening_url(process, startup_timeout)
        yield SimulatorHandle(url, process)
    finally:
        _stop_process(process)


def _read_listening_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SimulatorStartError(f"the simulator printed no address within {timeout:.0f} s")
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                code = process.wait()
                raise SimulatorStartError(f"the simulator exited with code {code} before listening")
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode().strip()
    if not line.startswith(LISTENING_PREFIX):
        raise SimulatorStartError(f"unexpected first line from the simulator: {line!r}")
    return line[len(LISTENING_PREFIX) :]


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("simulator process %s ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait()
    if process.stdout is not None:
        with suppress(OSError):
            process.stdout.close()
