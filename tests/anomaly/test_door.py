"""A door opened while the machine is not in service mode and nobody is signed in."""

from __future__ import annotations

import asyncio

import pytest

from vendhub.anomaly.door import CODE
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub

from .conftest import FakeClock, anomaly_alarms, start_anomaly, start_simulator

KEY = ("lobby_1", CODE)


async def set_door(hub: Hub, is_open: bool) -> None:
    await hub.services.async_call(
        "simulator", "set_door", {"machine_id": "lobby_1", "open": is_open}
    )
    await hub.async_block_till_done()


async def login(hub: Hub, **data: object) -> dict[str, object]:
    result = await hub.services.async_call(
        "anomaly", "service_login", {"machine_id": "lobby_1", "user": "tech_anna", **data}
    )
    assert isinstance(result, dict)
    return result


async def test_door_without_login_raises_with_login_does_not(hub: Hub, clock: FakeClock) -> None:
    await start_simulator(hub)
    await start_anomaly(hub, clock, {"door": {"grace": 0}})
    await set_door(hub, True)
    alarm = anomaly_alarms(hub)[KEY]
    assert alarm.severity == "critical"
    assert alarm.message == (
        "lobby_1's door was opened at 00:00 without a service login: the machine is in normal "
        "mode and nobody signed in."
    )
    await set_door(hub, False)
    assert KEY in anomaly_alarms(hub)  # an incident stays until a person clears it

    clock.advance(minutes=10)
    result = await login(hub)
    assert result["user"] == "tech_anna" and result["until"]
    await set_door(hub, True)
    await set_door(hub, False)
    assert anomaly_alarms(hub)[KEY].count == 1  # signed in: no new occurrence

    clock.advance(minutes=31)  # the 30-minute login ran out
    await set_door(hub, True)
    alarm = anomaly_alarms(hub)[KEY]
    assert alarm.count == 2
    assert alarm.message.startswith("lobby_1's door was opened at 00:41 without a service login")


async def test_sign_out_and_service_mode(hub: Hub, clock: FakeClock) -> None:
    simulator = await start_simulator(hub)
    await start_anomaly(hub, clock, {"door": {"grace": 0}})
    await login(hub, duration="8h")
    await login(hub, duration=0)  # signed out again
    await set_door(hub, True)
    assert anomaly_alarms(hub)[KEY].count == 1
    await set_door(hub, False)

    machine = simulator.entities["lobby_1"].machine
    machine.mode = "service"
    machine.async_write_state()
    await set_door(hub, True)
    assert anomaly_alarms(hub)[KEY].count == 1  # in service mode the door may open


async def test_grace_for_signing_in_after_opening(hub: Hub, clock: FakeClock) -> None:
    await start_simulator(hub)
    await start_anomaly(hub, clock, {"door": {"grace": 0.2}})
    # Opened, then signed in at the service panel within the grace: fine.
    await set_door(hub, True)
    await login(hub)
    await asyncio.sleep(0.3)
    await hub.async_block_till_done()
    assert anomaly_alarms(hub) == {}
    await set_door(hub, False)
    await login(hub, duration=0)

    # Opened and closed again within the grace, nobody signed in: raised at the close.
    await set_door(hub, True)
    clock.advance(seconds=40)
    await set_door(hub, False)
    assert anomaly_alarms(hub)[KEY].message == (
        "lobby_1's door was opened at 00:00 and closed after 40 s without a service login "
        "(the machine was in normal mode and nobody signed in)."
    )

    # Opened and left open past the grace: raised when the grace ends.
    await set_door(hub, True)
    await hub.async_block_till_done()
    assert anomaly_alarms(hub)[KEY].count == 1
    await asyncio.sleep(0.3)
    await hub.async_block_till_done()
    alarm = anomaly_alarms(hub)[KEY]
    assert alarm.count == 2
    assert "nobody signed in within 0 s" in alarm.message


async def test_service_login_data_is_checked(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock)
    with pytest.raises(InvalidServiceData, match="user"):
        await hub.services.async_call("anomaly", "service_login", {"machine_id": "lobby_1"})
    with pytest.raises(InvalidServiceData, match="at most 24 hours"):
        await login(hub, duration="25h")


async def test_a_door_back_from_unavailable_is_not_a_new_opening(
    hub: Hub, clock: FakeClock
) -> None:
    simulator = await start_simulator(hub)
    await start_anomaly(hub, clock, {"door": {"grace": 0}})
    await login(hub)
    await set_door(hub, True)  # opened by the signed-in technician
    machine = simulator.machines["lobby_1"]
    await simulator.async_feed("lobby_1", [machine.status_message(online=False)])
    assert hub.states.get("binary_sensor.lobby_1_door").state == "unavailable"
    clock.advance(hours=1)  # the login ran out while the machine was away
    await simulator.async_feed("lobby_1", [machine.status_message(online=True)])
    await hub.async_block_till_done()
    assert hub.states.get("binary_sensor.lobby_1_door").state == "on"
    assert anomaly_alarms(hub) == {}
