"""Fixtures shared by every test package: a provider simulator on loopback.

``simulator`` is a fresh in-thread simulator per test with default knobs (no latency, no
faults); ``make_simulator(**knobs)`` starts as many as a test needs, each stopped at its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from datamill.simulator import SimulatorHandle, run_simulator


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    """A simulator with default knobs, in this process, on a free loopback port."""
    with run_simulator() as handle:
        yield handle


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., SimulatorHandle]]:
    """A factory: ``make_simulator(latency_mean=0.01, failure_rate=0.1)`` -> a running simulator."""
    with ExitStack() as stack:

        def make(**knobs: Any) -> SimulatorHandle:
            return stack.enter_context(run_simulator(**knobs))

        yield make
