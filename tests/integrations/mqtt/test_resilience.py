"""A broker restart and a hub that was away: the session brings back every QoS 1 message."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.mosquitto import Mosquitto
from vendhub.const import EVENT_VEND_COMPLETED
from vendhub.core import Hub
from vendhub.recorder.models import VendTransaction
from vendhub.recorder.recorder import Recorder
from vendhub_integrations.mqtt.connection import backoff_delay

from .broker import vend_data
from .conftest import (
    MachineFactory,
    adopted_machine,
    link_config,
    make_hub,
    record,
    start_link,
    start_recorder,
    stop_hub,
    until,
)


def transactions(recorder: Recorder) -> dict[str, int]:
    """How many ledger rows each source event id has."""
    with recorder.engine.connect() as connection:
        rows = connection.execute(
            select(VendTransaction.source_event_id, func.count()).group_by(
                VendTransaction.source_event_id
            )
        ).all()
    return {event_id: number for event_id, number in rows}


def test_reconnect_delays_double_up_to_the_cap_with_jitter() -> None:
    delays = [backoff_delay(attempt, 0.5, 8.0) for attempt in range(1, 8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(10_000, 0.5, 60.0) <= 60.0


async def test_the_hub_reconnects_by_itself_after_a_broker_restart(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = await start_recorder(hub, tmp_path)
    runtime = await start_link(hub, link_config(broker, prefix))
    # the hub retries after 0.5 to 1 s, so the machine below is back before it is
    runtime.connection.min_delay = 1.0
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    vends = record(hub, EVENT_VEND_COMPLETED)
    before = await machine.event("vend_completed", vend_data())
    await machine.wait_acked(before)

    with caplog.at_level(logging.INFO, logger="vendhub_integrations.mqtt"):
        broker.stop()
        await until(lambda: not runtime.connection.connected)
        broker.start()
        # the machine reconnects first and sells while the hub is still away
        back = await machines("lobby_1")
        await back.status("online")  # as the agent does on every connect
        assert not runtime.connection.connected
        meanwhile = [await back.event("vend_completed", vend_data()) for _ in range(3)]
        await until(lambda: runtime.connection.connected, timeout=10)
        for event_id in meanwhile:
            await back.wait_acked(event_id)

    assert runtime.connection.connects == 2
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("Lost the connection to the MQTT broker") for message in messages)
    assert any(message.startswith("Reconnected to the MQTT broker") for message in messages)
    assert [event.data["event_id"] for event in vends] == [before, *meanwhile]
    await recorder.async_flush()
    assert transactions(recorder) == {event_id: 1 for event_id in [before, *meanwhile]}
    # the machine's retained status, delivered on the renewed subscriptions
    await until(lambda: hub.states.is_state("machine.lobby_1", "online"))


async def test_sales_made_while_the_hub_was_stopped_arrive_when_it_returns(
    broker: Mosquitto, prefix: str, machines: MachineFactory, tmp_path: Path
) -> None:
    config: dict[str, Any] = link_config(broker, prefix)
    first = await make_hub(tmp_path)
    recorder = await start_recorder(first, tmp_path)
    runtime = await start_link(first, config)
    machine = await machines("lobby_1")
    await adopted_machine(first, runtime, machine)
    await stop_hub(first)  # a clean DISCONNECT: the broker keeps the session

    away = [await machine.event("vend_completed", vend_data()) for _ in range(3)]
    door = await machine.event("door_opened")

    second = await make_hub(tmp_path)
    try:
        vends = record(second, EVENT_VEND_COMPLETED)
        recorder = await start_recorder(second, tmp_path)
        runtime = await start_link(second, config)
        for event_id in [*away, door]:
            await machine.wait_acked(event_id)
        assert [event.data["event_id"] for event in vends] == away
        assert second.states.is_state("binary_sensor.lobby_1_door", "on")
        await recorder.async_flush()
        assert transactions(recorder) == {event_id: 1 for event_id in away}
        assert runtime.connection.connects == 1
    finally:
        await stop_hub(second)


async def test_the_hub_starts_without_a_broker_and_connects_when_one_appears(
    hub: Hub, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    late = Mosquitto(tmp_path / "late-broker")  # configured, not running yet
    try:
        with caplog.at_level(logging.WARNING, logger="vendhub_integrations.mqtt"):
            runtime = await start_link(hub, link_config(late, prefix), connect=False)
            assert hub.states.is_state("sensor.mqtt_link_errors", "0")
            assert hub.services.has_service("mqtt", "adopt")
            await until(lambda: runtime.connection.failures >= 1)
            late.start()
            await until(lambda: runtime.connection.connected, timeout=10)
        expected = f"Cannot connect to the MQTT broker 127.0.0.1:{late.port}"
        assert any(record.getMessage().startswith(expected) for record in caplog.records)
        assert runtime.connection.connects == 1
        result = await hub.services.async_call("mqtt", "pending", {})
        assert result == {"pending": []}
    finally:
        late.stop()
