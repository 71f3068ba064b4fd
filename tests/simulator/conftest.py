"""Clients for the simulator tests: raw HTTP over loopback and the official SDKs, without retries."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from simulator_helpers import Http

from datamill.simulator import SimulatorHandle


@pytest.fixture
def http(simulator: SimulatorHandle) -> Http:
    """Raw HTTP to the ``simulator`` fixture."""
    return Http(simulator.base_url)


@pytest.fixture
def oai(simulator: SimulatorHandle) -> Iterator[openai.OpenAI]:
    """The OpenAI SDK pointed at the ``simulator`` fixture."""
    with openai.OpenAI(
        base_url=simulator.openai_base, api_key="sk-test", max_retries=0, timeout=10
    ) as client:
        yield client


@pytest.fixture
def claude(simulator: SimulatorHandle) -> Iterator[anthropic.Anthropic]:
    """The Anthropic SDK pointed at the ``simulator`` fixture."""
    with anthropic.Anthropic(
        base_url=simulator.anthropic_base, api_key="sk-ant-test", max_retries=0, timeout=10
    ) as client:
        yield client
