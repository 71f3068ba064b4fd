"""Starting and stopping: in a thread, as a subprocess, from the command line; flags round-trip."""

from __future__ import annotations

import subprocess
import sys
import urllib.error

import pytest
from simulator_helpers import Http, chat_body

from datamill.simulator import SimulatorConfig, run_simulator, run_simulator_process
from datamill.simulator.knob_flags import config_to_argv, parse_args
from datamill.simulator.server import LISTENING_PREFIX


def test_run_simulator_binds_loopback_and_stops_on_exit() -> None:
    with run_simulator(latency_mean=0.01) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.openai_base == sim.base_url + "/v1"
        assert sim.config()["latency_mean"] == 0.01
        assert Http(sim.base_url).post("/v1/chat/completions", chat_body("up")).status == 200
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        Http(sim.base_url).get("/_sim/stats")


def test_run_simulator_process_serves_from_a_child_and_terminates_it() -> None:
    with run_simulator_process(failure_rate=1.0, rpm_limit=100) as sim:
        assert sim.process is not None and sim.process.poll() is None
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.config()["rpm_limit"] == 100
        assert Http(sim.base_url).post("/v1/chat/completions", chat_body("x")).status == 500
        assert sim.stats()["server_errors"] == 1
        sim.reset()
        assert sim.stats()["requests"] == 0
    assert sim.process.poll() is not None


def _first_line(command: list[str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.mark.parametrize(
    "entry",
    [
        ["-m", "datamill.simulator"],
        ["-c", "from datamill.cli.app import main; main()", "simulate"],
    ],
    ids=["python -m datamill.simulator", "datamill simulate"],
)
def test_the_command_line_prints_its_address_then_serves_with_its_knobs(entry: list[str]) -> None:
    process, line = _first_line(
        [sys.executable, *entry, "--port", "0", "--latency-mean", "0.02", "--models", "a,b"]
    )
    try:
        assert line.startswith(LISTENING_PREFIX + "http://127.0.0.1:")
        http = Http(line[len(LISTENING_PREFIX) :])
        config = http.get("/_sim/config").json()
        assert (config["latency_mean"], config["models"]) == (0.02, ["a", "b"])
        assert http.post("/v1/chat/completions", chat_body("cli")).status == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_a_taken_port_or_a_bad_knob_exits_non_zero_with_a_message() -> None:
    with run_simulator() as sim:
        port = sim.base_url.rsplit(":", 1)[1]
        taken = subprocess.run(
            [sys.executable, "-m", "datamill.simulator", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert taken.returncode == 1
    assert "cannot bind" in taken.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "datamill.simulator", "--drop-rate", "7"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert "drop_rate" in bad.stderr


def test_flags_reproduce_a_config() -> None:
    config = SimulatorConfig(
        latency_mean=0.25, rpm_limit=30, require_api_key="k", batch_expiry_seconds=3.5, models=("x", "y")
    )
    argv = config_to_argv(config)
    assert "--latency-mean" in argv and "--seed" not in argv
    parsed, host, port = parse_args(argv + ["--port", "9"])
    assert parsed == config
    assert (host, port) == ("127.0.0.1", 9)
    assert parse_args(["--rpm-limit", "none"])[0].rpm_limit is None
