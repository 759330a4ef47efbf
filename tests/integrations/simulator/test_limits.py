"""Bounds of the simulator's clock: a speed or tick that would hang the hub, grow its memory
or keep a CPU busy is refused, naming the option, the range and why."""

from __future__ import annotations

from typing import Any

import pytest

from vendhub.config import ConfigError, validate
from vendhub_integrations.simulator import vendhub_config_schema

from .conftest import machine_config


def check(extra: dict[str, Any]) -> dict[str, Any]:
    raw = {"machines": [machine_config()], **extra}
    return validate(vendhub_config_schema(), raw, root_path=("simulator",))


def problems(extra: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check(extra)
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize("speed", [10_001, 1_000_000_000_000, "1e300"])
def test_a_speed_above_ten_thousand_is_refused(speed: Any) -> None:
    (problem,) = problems({"speed": speed})
    assert "simulator > speed" in problem
    assert "at most 10,000 (simulated seconds per real second)" in problem
    assert "fall behind" in problem


@pytest.mark.parametrize("speed", ["nan", "inf", float("inf")])
def test_a_speed_that_is_not_finite_is_refused(speed: Any) -> None:
    (problem,) = problems({"speed": speed})
    assert "expected a finite number" in problem


@pytest.mark.parametrize("tick", [0.000001, 0.009, "1ms", 0])
def test_a_tick_below_a_hundredth_of_a_second_is_refused(tick: Any) -> None:
    (problem,) = problems({"tick": tick})
    assert "simulator > tick" in problem
    assert "tick of 0.01 s or more" in problem
    assert "CPU" in problem


@pytest.mark.parametrize(("speed", "tick"), [(10_000, 10), (25, 3600), (1, "2d")])
def test_a_step_of_more_than_a_simulated_day_is_refused(speed: Any, tick: Any) -> None:
    (problem,) = problems({"speed": speed, "tick": tick})
    assert "simulator > speed" in problem
    assert "speed times tick" in problem
    assert "at most 86,400 s (a day)" in problem


@pytest.mark.parametrize(
    ("speed", "tick"), [(10_000, 8.64), (24, 3600), (1, 86_400), (6000, 0.01), (1, 0.01)]
)
def test_the_limits_themselves_are_taken(speed: float, tick: float) -> None:
    config = check({"speed": speed, "tick": tick})
    assert (config["speed"], config["tick"]) == (speed, tick)
