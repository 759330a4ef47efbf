"""A hub with alarms and anomaly detection, a clock the tests move, and machine traffic.

Vend, cash and door traffic comes from the simulator integration's virtual machines through
the real machine link, or, where a test needs exact counts, as bus events shaped exactly as
``vendhub/machine/link.py`` fires them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vendhub.anomaly.schema import CONFIG_SCHEMA
from vendhub.const import EVENT_VEND_COMPLETED, EVENT_VEND_FAILED
from vendhub.core.hub import CoreConfig, Hub
from vendhub.registry import async_load_registries
from vendhub_integrations.alarm import vendhub_setup as alarm_setup
from vendhub_integrations.alarm.alarms import Alarm, AlarmManager
from vendhub_integrations.anomaly import async_setup as anomaly_setup
from vendhub_integrations.anomaly.runtime import AnomalyRuntime
from vendhub_integrations.simulator import vendhub_config_schema as simulator_schema
from vendhub_integrations.simulator import vendhub_setup as simulator_setup
from vendhub_integrations.simulator.runtime import SimulatorRuntime

START = datetime.fromisoformat("2024-05-06T00:00:00+00:00")  # a Monday, midnight UTC


class FakeClock:
    """The detectors' clock: it says ``now`` and moves only when a test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub (UTC) with its registries and the alarm integration; stopped after the test."""
    instance = Hub(tmp_path, CoreConfig(currency="EUR", time_zone="UTC"))
    await async_load_registries(instance)
    await alarm_setup(hub=instance)
    yield instance
    if not instance.is_stopping:
        await instance.async_stop()


async def start_anomaly(
    hub: Hub, clock: FakeClock, raw: dict[str, Any] | None = None
) -> AnomalyRuntime:
    """Set the anomaly integration up with the ``anomaly:`` block ``raw``."""
    assert await anomaly_setup(hub, CONFIG_SCHEMA(raw or {}), clock=clock) is True
    runtime = hub.data["anomaly"]
    assert isinstance(runtime, AnomalyRuntime)
    return runtime


def machine_config(machine_id: str = "lobby_1", **overrides: Any) -> dict[str, Any]:
    """A simulated machine with deep slots, no faults, no door openings, a flat curve."""
    config: dict[str, Any] = {
        "id": machine_id,
        "sales_per_hour": 6,
        "daily_curve": [1] * 24,
        "jam_rate": 0,
        "failure_rate": 0,
        "door_openings_per_day": 0,
        "slots": {
            "A1": {"product": "Cola", "price": 150, "capacity": 5000},
            "A2": {"product": "Crisps", "price": 120, "capacity": 5000},
        },
    }
    config.update(overrides)
    return config


async def start_simulator(hub: Hub, *machines: dict[str, Any]) -> SimulatorRuntime:
    """The simulator integration on simulated time from START; steps only when asked."""
    config = simulator_schema()(
        {
            "seed": 42,
            "tick": 3600,
            "start": START.isoformat(),
            "summary_interval": 0,
            "machines": list(machines) or [machine_config()],
        }
    )
    assert await simulator_setup(hub=hub, config=config) is True
    runtime = hub.data["simulator"]
    assert isinstance(runtime, SimulatorRuntime)
    return runtime


def active_alarms(hub: Hub) -> dict[tuple[str | None, str], Alarm]:
    """The active alarms by (machine, code)."""
    manager = hub.data["alarm"]
    assert isinstance(manager, AlarmManager)
    return dict(manager.active)


def anomaly_alarms(hub: Hub) -> dict[tuple[str | None, str], Alarm]:
    """The active alarms the anomaly rules raised."""
    return {
        key: alarm for key, alarm in active_alarms(hub).items() if key[1].startswith("anomaly_")
    }


def fire_vend(
    hub: Hub,
    machine_id: str,
    at: datetime,
    *,
    failed: bool = False,
    reason: str = "jam",
    vend_id: str | None = None,
    payment_method: str = "card",
) -> str:
    """A ``vend_completed`` or ``vend_failed`` as the machine link fires it; returns vend_id."""
    vend_id = vend_id or uuid.uuid4().hex
    data: dict[str, Any] = {
        "machine_id": machine_id,
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "currency": "EUR",
        "payment_method": payment_method,
        "event_id": uuid.uuid4().hex,
        "vend_id": vend_id,
        "ts": at.isoformat(),
        "stock": 5,
    }
    if failed:
        data["reason"] = reason
    hub.bus.async_fire(EVENT_VEND_FAILED if failed else EVENT_VEND_COMPLETED, data)
    return vend_id
