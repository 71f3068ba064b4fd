"""Fixtures of the operator tests: a simulator in the test process, for real pipeline runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datamill.simulator import SimulatorHandle, run_simulator

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with run_simulator() as handle:
        yield handle
