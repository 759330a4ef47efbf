"""A machine hub linked to a fleet hub over a real Mosquitto: sales, config, commands."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
import pytest

from tests.integrations.mqtt.conftest import until
from tests.mosquitto import Mosquitto
from vendhub.plugins.manager import DATA_INTEGRATIONS
from vendhub.vending.session import VendRefused

from .conftest import MACHINE_ID, Fleet, MachineStarter, linked


async def test_a_vend_on_the_machine_hub_is_in_the_fleet_ledger_once(
    fleet: Fleet, machine_hub: MachineStarter
) -> None:
    machine = await machine_hub()
    await machine.link.agent.wait_connected(10)
    await fleet.adopt()
    # Announce: the fleet knows the machine's slots from the local planogram.
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "5")
    assert fleet.attributes(f"slot.{MACHINE_ID}_a1")["price"] == 150

    session = await machine.buy("A1")
    assert session["state"] == "completed"
    await until(lambda: len(fleet.vends()) == 1, timeout=10)
    await machine.link.agent.wait_drained(10)
    row = fleet.vends()[0]
    assert (row.source_event_id, row.slot_code, row.product, row.price, row.outcome) == (
        session["session_id"],
        "A1",
        "Cola",
        150,
        "completed",
    )
    assert row.payment_method == "card"
    # The fleet's payment row names the machine's provider and its reference of the payment.
    (payment,) = fleet.payments()
    assert (payment.provider, payment.provider_reference, payment.amount) == (
        "instant",
        session["authorization"]["reference"],
        150,
    )
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "4")
    assert len(fleet.vends()) == 1


async def test_vends_while_the_broker_is_down_arrive_once_it_is_back(
    fleet: Fleet, machine_hub: MachineStarter, broker: Mosquitto
) -> None:
    machine = await linked(fleet, machine_hub, drained=True)

    broker.stop()
    try:
        await until(lambda: not machine.link.agent.connected, timeout=10)
        sessions = [await machine.buy("A1"), await machine.buy("A2"), await machine.buy("A1")]
        assert [session["state"] for session in sessions] == ["completed"] * 3
        assert machine.link.agent.pending == 3  # on disk, waiting for the fleet
        assert fleet.vends() == []
    finally:
        broker.start()
    await until(lambda: len(fleet.vends()) == 3, timeout=30)
    await machine.link.agent.wait_drained(10)
    rows = fleet.vends()
    assert sorted(row.source_event_id for row in rows) == sorted(
        session["session_id"] for session in sessions
    )
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "3")
    assert fleet.state(f"slot.{MACHINE_ID}_a2") == "4"
    assert len(fleet.vends()) == 3


async def test_a_vend_kept_in_the_outbox_survives_a_restart_of_the_machine_hub(
    fleet: Fleet, machine_hub: MachineStarter, broker: Mosquitto
) -> None:
    machine = await linked(fleet, machine_hub, drained=True)

    broker.stop()
    try:
        await until(lambda: not machine.link.agent.connected, timeout=10)
        session = await machine.buy("A2")
        await machine.hub.async_stop()  # the Pi shuts down with the sale still unsent
        assert fleet.vends() == []
    finally:
        broker.start()
    machine = await machine_hub()
    await until(lambda: len(fleet.vends()) == 1, timeout=30)
    await machine.link.agent.wait_drained(10)
    assert fleet.vends()[0].source_event_id == session["session_id"]
    assert len(fleet.vends()) == 1


async def test_a_vend_that_ends_while_the_uplink_is_not_loaded_comes_from_the_journal(
    fleet: Fleet, machine_hub: MachineStarter
) -> None:
    """As at shutdown: the uplink unloads before the vending integration, whose sessions can
    still end; the journal has them, and the next start of the uplink sends them."""
    machine = await machine_hub()
    await machine.link.agent.wait_connected(10)
    await fleet.adopt()
    first = await machine.buy("A1")
    await until(lambda: len(fleet.vends()) == 1, timeout=10)

    manager = machine.hub.data[DATA_INTEGRATIONS]
    assert await manager.async_unload("uplink")
    unseen = await machine.buy("A1")
    assert await manager.async_reload("uplink", manager.plan.configs["uplink"])

    await until(lambda: len(fleet.vends()) == 2, timeout=10)
    await machine.link.agent.wait_drained(10)
    assert [row.source_event_id for row in fleet.vends()] == [
        first["session_id"],
        unseen["session_id"],
    ]
    # Already acknowledged vends are not sent again by a later start.
    assert await machine.link.async_store_backlog() == 0
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "3")


async def test_a_price_change_on_the_fleet_reaches_the_engine_and_is_confirmed(
    fleet: Fleet, machine_hub: MachineStarter
) -> None:
    machine = await linked(fleet, machine_hub)
    engine = machine.link.engine

    # A customer is paying when the price changes: the session keeps its price.
    running = await machine.hub.services.async_call(
        "vending",
        "select",
        {"machine_id": MACHINE_ID, "slot": "A1", "method": "card", "wait": False},
    )
    answer = await fleet.hub.services.async_call(
        "mqtt",
        "publish_config",
        {"machine_id": MACHINE_ID, "slots": {"A1": {"price": 170, "product": "Cola Zero"}}},
    )
    assert answer["version"] == 2
    await until(lambda: engine.machine.planogram["A1"].price == 170, timeout=10)
    finished = await engine.async_wait(running["session_id"], timeout=10)
    assert finished.price.amount == 150

    # The fleet sees the confirmation: no longer pending.
    await until(lambda: fleet.attributes(f"machine.{MACHINE_ID}")["config_applied_version"] == 2)
    assert fleet.attributes(f"machine.{MACHINE_ID}")["config_pending"] is False
    slot = fleet.attributes(f"slot.{MACHINE_ID}_a1")
    assert slot["config_pending"] is False and "pending_price" not in slot
    # The machine hub's own slot entity shows the new plan.
    local = machine.hub.states.get(f"slot.{MACHINE_ID}_a1")
    assert local is not None
    assert (local.attributes["price"], local.attributes["product"]) == (170, "Cola Zero")

    # The next vend charges the new price, and the fleet's ledger says so.
    session = await machine.buy("A1")
    assert (session["price"], session["product"]) == (170, "Cola Zero")
    await until(lambda: len(fleet.vends()) == 2, timeout=10)
    assert sorted(row.price for row in fleet.vends()) == [150, 170]


async def test_a_mode_change_on_the_fleet_stops_sales_and_is_confirmed(
    fleet: Fleet, machine_hub: MachineStarter
) -> None:
    machine = await linked(fleet, machine_hub)

    await fleet.hub.services.async_call(
        "mqtt", "publish_config", {"machine_id": MACHINE_ID, "mode": "out_of_order"}
    )
    await until(lambda: machine.link.engine.mode.value == "out_of_order", timeout=10)
    await until(lambda: fleet.attributes(f"machine.{MACHINE_ID}")["config_pending"] is False)
    assert "pending_mode" not in fleet.attributes(f"machine.{MACHINE_ID}")
    local = machine.hub.states.get(f"machine.{MACHINE_ID}")
    assert local is not None and local.attributes["mode"] == "out_of_order"
    with pytest.raises(VendRefused, match="out of order"):
        await machine.buy("A1")

    await fleet.hub.services.async_call(
        "mqtt", "publish_config", {"machine_id": MACHINE_ID, "mode": "normal"}
    )
    await until(lambda: machine.link.engine.mode.value == "normal", timeout=10)
    assert (await machine.buy("A1"))["state"] == "completed"


async def test_a_slot_the_machine_lacks_is_rejected_and_stays_pending(
    fleet: Fleet, machine_hub: MachineStarter
) -> None:
    machine = await linked(fleet, machine_hub)

    await fleet.hub.services.async_call(
        "mqtt",
        "publish_config",
        {
            "machine_id": MACHINE_ID,
            "slots": {
                "A2": {"price": 90},
                "Z9": {"product": "Gum", "price": 50, "capacity": 5},
            },
        },
    )
    await until(lambda: fleet.attributes(f"machine.{MACHINE_ID}")["config_applied_version"] == 2)
    rejected = fleet.attributes(f"machine.{MACHINE_ID}")["config_rejected"]
    assert list(rejected) == ["slots.Z9"]
    assert "has no slot 'Z9'" in rejected["slots.Z9"]
    z9 = fleet.attributes(f"slot.{MACHINE_ID}_z9")
    assert (z9["config_pending"], z9["pending_price"]) == (True, 50)
    assert "has no slot 'Z9'" in z9["config_rejected"]
    # The rest of the same config is applied and confirmed.
    assert machine.link.engine.machine.planogram["A2"].price == 90
    assert fleet.attributes(f"slot.{MACHINE_ID}_a2")["config_pending"] is False
    assert "Z9" not in machine.link.engine.machine.planogram


async def test_commands_restock_runs_vend_and_others_are_refused(
    fleet: Fleet, machine_hub: MachineStarter
) -> None:
    machine = await machine_hub()
    await machine.link.agent.wait_connected(10)
    await fleet.adopt()
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "5")

    async def command(name: str, **args: Any) -> dict[str, Any]:
        return await fleet.hub.services.async_call(
            "mqtt", "command", {"machine_id": MACHINE_ID, "name": name, "args": args}
        )

    restocked = await command("restock", slot="A1")
    assert (restocked["ok"], restocked["result"]) == (True, {"slots": {"A1": 8}})  # its par
    assert machine.link.engine.stock["A1"] == 8
    # The restock is an event too: the fleet's slot follows it.
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "8")

    unknown_slot = await command("restock", slot="Z9")
    assert unknown_slot["ok"] is False and "no slot 'Z9'" in unknown_slot["error"]
    vend = await command("vend", slot="A1")
    assert vend["ok"] is False and "remote vend" in vend["error"]
    lock = await command("lock_slots")
    assert (lock["ok"], lock["error"]) == (False, "unknown command 'lock_slots'")
    pong = await command("ping")
    assert pong["ok"] is True and pong["result"]["pong"] is True
    assert machine.link.engine.stock["A2"] == 5


async def test_telemetry_carries_the_stock_of_every_slot(
    fleet: Fleet, machine_hub: MachineStarter, broker: Mosquitto, prefix: str
) -> None:
    readings: list[dict[str, Any]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(f"{prefix}/{MACHINE_ID}/telemetry")
        machine = await machine_hub()
        await machine.buy("A2")

        async def first_with_a2_sold() -> None:
            async for message in client.messages:
                payload = json.loads(message.payload)
                readings.append(payload["readings"])
                if payload["readings"]["stock_a2"] == 4:
                    return

        await asyncio.wait_for(first_with_a2_sold(), 10)
    last = readings[-1]
    assert (last["stock_a1"], last["stock_a2"], last["mode"]) == (5, 4, "normal")
    assert last["board_online"] is True


async def test_the_fleets_prices_hold_after_a_restart_without_the_fleet(
    fleet: Fleet, machine_hub: MachineStarter, broker: Mosquitto
) -> None:
    machine = await machine_hub()
    await machine.link.agent.wait_connected(10)
    await fleet.adopt()
    await fleet.hub.services.async_call(
        "mqtt",
        "publish_config",
        {"machine_id": MACHINE_ID, "mode": "free_vend", "slots": {"A2": {"price": 130}}},
    )
    await until(lambda: fleet.attributes(f"machine.{MACHINE_ID}")["config_applied_version"] == 2)
    await machine.hub.async_stop()

    broker.stop()
    try:
        machine = await machine_hub()
        engine = machine.link.engine
        assert not machine.link.agent.connected
        assert (engine.machine.planogram["A2"].price, engine.mode.value) == (130, "free_vend")
        local = machine.hub.states.get(f"slot.{MACHINE_ID}_a2")
        assert local is not None and local.attributes["price"] == 130
    finally:
        broker.start()


async def test_a_smaller_capacity_cuts_the_stock_and_shows_on_the_slot(
    fleet: Fleet, machine_hub: MachineStarter
) -> None:
    machine = await machine_hub()
    await machine.link.agent.wait_connected(10)
    await fleet.adopt()
    await fleet.hub.services.async_call(
        "mqtt",
        "publish_config",
        {"machine_id": MACHINE_ID, "slots": {"A1": {"capacity": 3, "par": 2}}},
    )
    await until(lambda: fleet.attributes(f"machine.{MACHINE_ID}")["config_applied_version"] == 2)
    engine = machine.link.engine
    assert engine.stock["A1"] == 3
    assert (engine.machine.planogram["A1"].capacity, engine.machine.planogram["A1"].par) == (3, 2)
    local = machine.hub.states.get(f"slot.{MACHINE_ID}_a1")
    assert local is not None and local.state == "3"
    assert (local.attributes["capacity"], local.attributes["par_level"]) == (3, 2)
    assert fleet.attributes(f"slot.{MACHINE_ID}_a1")["config_pending"] is False
    # Restocking fills to the new par level, within the new capacity, and lowers no slot.
    await machine.hub.services.async_call("vending", "restock", {"machine_id": MACHINE_ID})
    assert engine.stock["A1"] == 3
    await machine.hub.services.async_call(
        "vending", "restock", {"machine_id": MACHINE_ID, "slots": {"A1": 1}}
    )
    await machine.hub.services.async_call("vending", "restock", {"machine_id": MACHINE_ID})
    assert engine.stock["A1"] == 2
