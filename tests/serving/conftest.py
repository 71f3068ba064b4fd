"""Fixtures of the serving tests: a simulator in a background thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from datamill.simulator import SimulatorHandle, run_simulator


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    """A perfect, instant simulator; tests change its knobs with ``sim.configure(...)``."""
    with run_simulator() as handle:
        yield handle
