"""Helpers for the simulator tests: a hub with registries, and a set-up simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vendhub.core import Event, Hub
from vendhub.registry import async_load_registries
from vendhub_integrations.simulator import vendhub_config_schema, vendhub_setup
from vendhub_integrations.simulator.runtime import SimulatorRuntime

START = "2024-05-06T00:00:00+00:00"  # a Monday, midnight UTC


def machine_config(machine_id: str = "lobby_1", **overrides: Any) -> dict[str, Any]:
    """One machine with two slots, no faults, no door openings, a flat daily curve."""
    config: dict[str, Any] = {
        "id": machine_id,
        "name": f"Machine {machine_id}",
        "location": "Main lobby",
        "sales_per_hour": 6,
        "daily_curve": [1] * 24,
        "jam_rate": 0,
        "failure_rate": 0,
        "door_openings_per_day": 0,
        "slots": {
            "A1": {"product": "Cola", "price": 150, "capacity": 10},
            "A2": {"product": "Crisps", "price": 120, "capacity": 8, "stock": 5},
        },
    }
    config.update(overrides)
    return config


def simulator_config(*machines: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A validated ``simulator:`` block; steps happen only when a test asks for them."""
    raw: dict[str, Any] = {"seed": 42, "tick": 3600, "start": START}
    raw["machines"] = list(machines) or [machine_config()]
    raw.update(top)
    return vendhub_config_schema()(raw)


async def setup_simulator(hub: Hub, config: dict[str, Any]) -> SimulatorRuntime:
    """Set the simulator up through its hook, as the hub does, and return its runtime."""
    assert await vendhub_setup(hub=hub, config=config) is True
    runtime = hub.data["simulator"]
    assert isinstance(runtime, SimulatorRuntime)
    return runtime


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub with its registries loaded; stopped at the end of the test."""
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    yield hub
    await hub.async_stop()


def record(hub: Hub, *event_types: str) -> list[Event]:
    """Collect every event of ``event_types`` fired from now on."""
    events: list[Event] = []
    for event_type in event_types:
        hub.bus.async_listen(event_type, events.append)
    return events
