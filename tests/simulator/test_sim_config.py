"""SimulatorConfig refuses impossible knobs and coerces run-time updates to the field types."""

from __future__ import annotations

import pytest

from datamill.simulator import SimulatorConfig
from datamill.simulator.config import coerce_knob
from datamill.simulator.faults import RateLimiter


@pytest.mark.parametrize(
    "knobs",
    [
        {"failure_rate": 1.5},
        {"drop_rate": -0.1},
        {"failure_rate": 0.6, "malformed_rate": 0.6},
        {"latency_mean": -1.0},
        {"rpm_limit": 0},
        {"batch_expiry_seconds": 0.0},
        {"openai_batch_max_lines": 0},
    ],
)
def test_impossible_knobs_are_refused(knobs: dict) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**knobs)


def test_knob_values_are_coerced_to_their_field_types() -> None:
    assert coerce_knob("latency_mean", 1) == 1.0 and isinstance(coerce_knob("latency_mean", 1), float)
    assert coerce_knob("rpm_limit", "60") == 60
    assert coerce_knob("rpm_limit", None) is None
    assert coerce_knob("models", ["a", "b"]) == ("a", "b")
    assert coerce_knob("models", "a,b") == ("a", "b")
    for name, value in [("rpm_limit", 1.5), ("seed", True), ("latency_mean", [1]), ("seed", None)]:
        with pytest.raises(ValueError):
            coerce_knob(name, value)
    with pytest.raises(KeyError):
        coerce_knob("latency", 1)


def test_with_knobs_returns_a_changed_copy() -> None:
    base = SimulatorConfig()
    changed = base.with_knobs(failure_rate=0.5, seed="3")
    assert (changed.failure_rate, changed.seed) == (0.5, 3)
    assert base.failure_rate == 0.0
    assert changed.to_json()["models"] == list(base.models)


def test_the_rate_limiter_allows_a_burst_then_refills_at_rpm_per_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(rpm=60, burst=2, clock=lambda: now[0])
    assert [limiter.try_acquire() for _ in range(2)] == [0.0, 0.0]
    assert limiter.try_acquire() == pytest.approx(1.0)
    now[0] = 0.5
    assert limiter.try_acquire() == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.try_acquire() == 0.0
