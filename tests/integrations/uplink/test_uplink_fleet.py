"""A machine hub on the fleet over a real Mosquitto: two machines behind one uplink, and the
board's temperature and door in the telemetry."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.mqtt.conftest import until
from tests.mosquitto import Mosquitto
from vendhub.core.hub import Hub
from vendhub_integrations.uplink.machine_link import MachineUplink
from vendhub_integrations.vending.simulator_board import SimulatorDispenser

from .conftest import (
    MACHINE_CONFIGURATION,
    MACHINE_ID,
    Fleet,
    MachineHub,
    linked,
    start_machine_hub_in,
    stop_machine_hubs,
)

SECOND_ID = "lobby_2"

TWO_MACHINES = """\
vendhub:
  name: Lobby machines
  currency: EUR
vending:
  machines:
    lobby_1:
      name: Lobby
      planogram:
        A1: {{product: Cola, price: 150, capacity: 10, stock: 5}}
        A2: {{product: Water, price: 100, capacity: 10, stock: 5}}
      dispenser:
        platform: simulator
        dispense_time: 0
      payments:
        - platform: instant
    lobby_2:
      name: Lobby snacks
      planogram:
        A1: {{product: Crisps, price: 120, capacity: 8, stock: 7}}
      dispenser:
        platform: simulator
        dispense_time: 0
      payments:
        - platform: instant
uplink:
  broker: mqtt://127.0.0.1:{port}
  prefix: {prefix}
  machines:
    lobby_1: {{username: lobby_1}}
    lobby_2: {{username: lobby_2}}
  telemetry_interval: 1s
  resend_after: 1s
  keepalive: 5
"""


def chilled_configuration() -> str:
    """The uplink tests' machine hub, its simulator board reporting 4.5 °C and a shut door."""
    board = "        platform: simulator\n        dispense_time: 0\n"
    assert MACHINE_CONFIGURATION.count(board) == 1
    return MACHINE_CONFIGURATION.replace(
        board, f"{board}        temperature: 4.5\n        door_open: false\n"
    )


ConfiguredStarter = Callable[[str], Awaitable[MachineHub]]


@pytest.fixture
async def start_machine_hub(
    tmp_path: Path, broker: Mosquitto, prefix: str
) -> AsyncIterator[ConfiguredStarter]:
    """``await start_machine_hub(configuration)`` starts a machine hub of that configuration
    (its ``{port}`` and ``{prefix}`` filled in)."""
    folder = tmp_path / "machine"
    folder.mkdir()
    running: list[Hub] = []

    async def start(configuration: str) -> MachineHub:
        (folder / "configuration.yaml").write_text(
            configuration.format(port=broker.port, prefix=prefix)
        )
        return await start_machine_hub_in(folder, running)

    yield start
    await stop_machine_hubs(running)


def links_of(machine: MachineHub) -> dict[str, MachineUplink]:
    """The machine hub's uplinks by machine id."""
    return {link.machine_id: link for link in machine.hub.data["uplink"]}


def broker_users(broker: Mosquitto, prefix: str) -> dict[str, str]:
    """Client id → username of the connections under ``prefix`` the broker has logged."""
    pattern = re.compile(rf"New client connected from \S+ as ({prefix}-\S+) \(.*u'([^']*)'\)")
    return dict(pattern.findall(broker.log.read_text(errors="replace")))


async def test_two_machines_behind_one_uplink_each_report_and_take_their_own_config(
    fleet: Fleet, start_machine_hub: ConfiguredStarter, broker: Mosquitto, prefix: str
) -> None:
    machine = await start_machine_hub(TWO_MACHINES)
    links = links_of(machine)
    assert sorted(links) == [MACHINE_ID, SECOND_ID]
    for machine_id, link in links.items():
        await link.agent.wait_connected(10)
        await fleet.adopt(machine_id)
        await until(
            lambda machine_id=machine_id: (
                fleet.attributes(f"machine.{machine_id}")["config_applied_version"] == 1
            ),
            timeout=10,
        )
    # Each machine is its own client of the broker, with its own user.
    assert broker_users(broker, prefix) == {
        f"{prefix}-machine-{MACHINE_ID}": MACHINE_ID,
        f"{prefix}-machine-{SECOND_ID}": SECOND_ID,
    }

    # Each announce carries its own machine's planogram.
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "5")
    await until(lambda: fleet.state(f"slot.{SECOND_ID}_a1") == "7")
    first_a1 = fleet.attributes(f"slot.{MACHINE_ID}_a1")
    second_a1 = fleet.attributes(f"slot.{SECOND_ID}_a1")
    assert (first_a1["product"], first_a1["price"]) == ("Cola", 150)
    assert (second_a1["product"], second_a1["price"], second_a1["capacity"]) == ("Crisps", 120, 8)
    assert fleet.state(f"slot.{MACHINE_ID}_a2") == "5"
    assert fleet.hub.states.get(f"slot.{SECOND_ID}_a2") is None

    # A vend on each lands once in the fleet's ledger, under the machine that sold it.
    first = await machine.buy("A1", MACHINE_ID)
    second = await machine.buy("A1", SECOND_ID)
    assert (first["state"], second["state"]) == ("completed", "completed")
    await until(lambda: fleet.vends(MACHINE_ID) and fleet.vends(SECOND_ID), timeout=10)
    for link in links.values():
        await link.agent.wait_drained(10)
    (first_row,) = fleet.vends(MACHINE_ID)
    (second_row,) = fleet.vends(SECOND_ID)
    assert (first_row.source_event_id, first_row.product, first_row.price) == (
        first["session_id"],
        "Cola",
        150,
    )
    assert (second_row.source_event_id, second_row.product, second_row.price) == (
        second["session_id"],
        "Crisps",
        120,
    )
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "4")
    await until(lambda: fleet.state(f"slot.{SECOND_ID}_a1") == "6")

    # A price change for the second machine reaches its engine alone, and it confirms it.
    answer = await fleet.hub.services.async_call(
        "mqtt", "publish_config", {"machine_id": SECOND_ID, "slots": {"A1": {"price": 130}}}
    )
    assert answer["version"] == 2
    second_engine, first_engine = links[SECOND_ID].engine, links[MACHINE_ID].engine
    await until(lambda: second_engine.machine.planogram["A1"].price == 130, timeout=10)
    await until(lambda: fleet.attributes(f"machine.{SECOND_ID}")["config_applied_version"] == 2)
    assert fleet.attributes(f"machine.{SECOND_ID}")["config_pending"] is False
    assert fleet.attributes(f"slot.{SECOND_ID}_a1")["price"] == 130
    assert first_engine.machine.planogram["A1"].price == 150
    assert fleet.attributes(f"machine.{MACHINE_ID}")["config_applied_version"] == 1
    assert fleet.attributes(f"slot.{MACHINE_ID}_a1")["price"] == 150
    # The next sales charge each machine's own price.
    assert (await machine.buy("A1", SECOND_ID))["price"] == 130
    assert (await machine.buy("A1", MACHINE_ID))["price"] == 150
    await until(lambda: len(fleet.vends(SECOND_ID)) == 2, timeout=10)
    await until(lambda: len(fleet.vends(MACHINE_ID)) == 2, timeout=10)
    assert [row.price for row in fleet.vends(SECOND_ID)] == [120, 130]
    assert [row.price for row in fleet.vends(MACHINE_ID)] == [150, 150]


async def test_the_boards_temperature_and_door_reach_the_fleet_in_the_telemetry(
    fleet: Fleet, start_machine_hub: ConfiguredStarter
) -> None:
    machine = await linked(fleet, partial(start_machine_hub, chilled_configuration()))
    temperature, door = f"sensor.{MACHINE_ID}_temperature", f"binary_sensor.{MACHINE_ID}_door"
    await until(lambda: fleet.state(temperature) == "4.5", timeout=10)
    await until(lambda: fleet.state(door) == "off")

    board = machine.link.engine.machine.dispenser
    assert isinstance(board, SimulatorDispenser)
    board.set_temperature(9.0)
    board.set_door(True)
    assert await machine.link.async_send_telemetry() is True
    await until(lambda: fleet.state(temperature) == "9.0", timeout=10)
    await until(lambda: fleet.state(door) == "on")


async def test_a_temperature_that_appears_after_start_reaches_the_fleet(
    fleet: Fleet, start_machine_hub: ConfiguredStarter
) -> None:
    """A board without a thermometer at start (plugged in later, or a status that timed out)
    is announced again as refrigerated once it reports one, so the fleet shows it."""
    machine = await linked(fleet, partial(start_machine_hub, MACHINE_CONFIGURATION))
    temperature = f"sensor.{MACHINE_ID}_temperature"
    assert machine.link.refrigerated is False
    assert fleet.state(temperature) is None

    board = machine.link.engine.machine.dispenser
    assert isinstance(board, SimulatorDispenser)
    board.set_temperature(6.5)
    assert await machine.link.async_send_telemetry() is True
    assert machine.link.refrigerated is True
    # The reading that came with the new announcement may beat it to the fleet: the next
    # telemetry (every second here) brings it.
    await until(lambda: fleet.state(temperature) == "6.5", timeout=10)


async def test_the_door_opening_and_closing_reach_the_fleet_at_once_as_events(
    fleet: Fleet, start_machine_hub: ConfiguredStarter
) -> None:
    """Door changes go as ``door_opened`` / ``door_closed`` events through the outbox, not
    with the next telemetry: an opening shorter than the telemetry interval (an hour here)
    still reaches the fleet, whose door alarm watches the sensor."""
    configuration = chilled_configuration()
    assert configuration.count("telemetry_interval: 1s") == 1
    configuration = configuration.replace("telemetry_interval: 1s", "telemetry_interval: 1h")
    machine = await linked(fleet, partial(start_machine_hub, configuration))
    door = f"binary_sensor.{MACHINE_ID}_door"
    # The telemetry sent on connecting came before the adoption: one now, and none for an hour.
    assert await machine.link.async_send_telemetry() is True
    await until(lambda: fleet.state(door) == "off", timeout=10)
    agent = machine.link.agent
    sent: list[str] = []
    publish_events = agent.publish_events

    async def noting_publish_events(messages: list[dict[str, Any]]) -> int:
        sent.extend(message["event"] for message in messages)
        return await publish_events(messages)

    agent.publish_events = noting_publish_events  # type: ignore[method-assign]

    board = machine.link.engine.machine.dispenser
    assert isinstance(board, SimulatorDispenser)
    board.set_door(True)
    await until(lambda: fleet.state(door) == "on", timeout=10)
    board.set_door(True)  # no change: no event
    board.set_door(False)
    await until(lambda: fleet.state(door) == "off", timeout=10)
    assert sent == ["door_opened", "door_closed"]
