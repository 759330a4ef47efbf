"""One machine's credentials on two connections at once: transports' events and MQTT status."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from vendhub.anomaly.credentials import CODE
from vendhub.const import EVENT_MACHINE_CONNECTION
from vendhub.core.hub import Hub

from .conftest import FakeClock, anomaly_alarms, start_anomaly

KEY = ("lobby_1", CODE)


async def connection(hub: Hub, connection_id: str | None, state: str, **data: Any) -> None:
    hub.bus.async_fire(
        EVENT_MACHINE_CONNECTION,
        {
            "machine_id": "lobby_1",
            "connection_id": connection_id,
            "transport": "websocket",
            "state": state,
            **data,
        },
    )
    await hub.async_block_till_done()


async def mqtt_status(hub: Hub, state: str, session: str, retain: bool = False) -> None:
    payload = {"v": 1, "state": state, "ts": "2024-05-06T00:00:00Z", "session": session}
    hub.bus.async_fire(
        "mqtt_message_received",
        {
            "topic": "site/north/lobby_1/status",
            "payload": json.dumps(payload),
            "qos": 1,
            "retain": retain,
        },
    )
    await hub.async_block_till_done()


async def test_two_live_connections_raise_one_left_clears(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock, {"credentials": {"grace": 0}})
    await connection(hub, "c1", "connected", remote="10.0.0.5")
    assert anomaly_alarms(hub) == {}
    clock.advance(minutes=3)
    await connection(hub, "c2", "connected", remote="203.0.113.9", transport="http")
    alarm = anomaly_alarms(hub)[KEY]
    assert alarm.severity == "critical"
    assert alarm.message == (
        "lobby_1's credentials are in use on 2 connections at once: websocket from 10.0.0.5 "
        "since 00:00, http from 203.0.113.9 since 00:03. Only one device should hold a "
        "machine's credentials."
    )
    await connection(hub, "c2", "disconnected", transport="http")
    assert anomaly_alarms(hub) == {}


async def test_a_reconnect_within_the_grace_is_fine(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock, {"credentials": {"grace": 0.2}})
    await connection(hub, "c1", "connected")
    await connection(hub, "c2", "connected")  # the new connection before the old one closed
    await connection(hub, "c1", "disconnected")
    await asyncio.sleep(0.3)
    assert anomaly_alarms(hub) == {}
    await connection(hub, "c3", "connected")
    await asyncio.sleep(0.3)
    await hub.async_block_till_done()
    assert KEY in anomaly_alarms(hub)
    await connection(hub, None, "reset")  # the transport restarted: its connections are gone
    assert anomaly_alarms(hub) == {}


async def test_mqtt_sessions_when_turned_on(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock, {"credentials": {"mqtt_sessions": True, "mqtt_grace": 0}})
    await mqtt_status(hub, "online", "7c1e4a90b2d34f8e", retain=True)
    await mqtt_status(hub, "offline", "7c1e4a90b2d34f8e")  # its will
    await mqtt_status(hub, "online", "a1b2c3d4e5f60718")  # an ordinary reconnect
    assert anomaly_alarms(hub) == {}
    await mqtt_status(hub, "online", "ffee00112233aabb")  # a second device, a1b2... still on
    alarm = anomaly_alarms(hub)[KEY]
    assert "MQTT session a1b2c3d4 since 00:00, MQTT session ffee0011 since 00:00" in alarm.message
    await mqtt_status(hub, "offline", "a1b2c3d4e5f60718")
    assert anomaly_alarms(hub) == {}


async def test_mqtt_sessions_are_ignored_by_default(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock)
    await mqtt_status(hub, "online", "a1b2c3d4e5f60718")
    await mqtt_status(hub, "online", "ffee00112233aabb")
    await asyncio.sleep(0)
    assert anomaly_alarms(hub) == {}
