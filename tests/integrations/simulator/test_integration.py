"""The simulator in a hub: entities, sales through the link, services, fleet, unload."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from vendhub.const import EVENT_VEND_COMPLETED, EVENT_VEND_FAILED, EVENT_VEND_STARTED
from vendhub.core import Hub
from vendhub.core.errors import InvalidServiceData
from vendhub.helpers.entity_platform import async_entities
from vendhub.plugins.discovery import discover_integrations
from vendhub.plugins.manager import IntegrationManager
from vendhub.plugins.plan import plan_integrations
from vendhub.registry import async_load_registries, device_registry
from vendhub_integrations.simulator import vendhub_unload

from .conftest import START, machine_config, record, setup_simulator, simulator_config

SIMULATOR_DOMAINS = ("machine", "slot", "sensor", "binary_sensor")


async def test_setup_creates_one_device_and_its_entities_per_machine(hub: Hub) -> None:
    kiosk = machine_config("kiosk_2", name="Kiosk Two")
    del kiosk["location"]
    config = simulator_config(
        machine_config("lobby_1", refrigerated=True, model="Fridge 9000"), kiosk
    )
    await setup_simulator(hub, config)

    assert sorted(hub.states.async_entity_ids()) == [
        "binary_sensor.kiosk_2_door",
        "binary_sensor.lobby_1_door",
        "machine.kiosk_2",
        "machine.lobby_1",
        "sensor.kiosk_2_cash_box",
        "sensor.lobby_1_cash_box",
        "sensor.lobby_1_temperature",
        "slot.kiosk_2_a1",
        "slot.kiosk_2_a2",
        "slot.lobby_1_a1",
        "slot.lobby_1_a2",
    ]
    machine = hub.states.get("machine.lobby_1")
    assert machine is not None and machine.state == "online"
    assert {key: machine.attributes[key] for key in ("mode", "firmware", "model")} == {
        "mode": "normal",
        "firmware": "1.0.0",
        "model": "Fridge 9000",
    }
    assert machine.attributes["sales_today"] == 0
    assert machine.attributes["revenue_today"] == 0
    assert machine.attributes["currency"] == "EUR"
    assert machine.attributes["friendly_name"] == "Machine lobby_1"

    slot = hub.states.get("slot.lobby_1_a2")
    assert slot is not None and slot.state == "5"
    assert {key: slot.attributes[key] for key in ("product", "price", "capacity", "currency")} == {
        "product": "Crisps",
        "price": 120,
        "capacity": 8,
        "currency": "EUR",
    }
    temperature = hub.states.get("sensor.lobby_1_temperature")
    assert temperature is not None and temperature.state == "4.0"
    assert temperature.attributes["unit_of_measurement"] == "°C"
    assert hub.states.is_state("binary_sensor.lobby_1_door", "off")
    cash = hub.states.get("sensor.lobby_1_cash_box")
    assert cash is not None and cash.state == "0" and cash.attributes["currency"] == "EUR"

    device = device_registry(hub).async_get_device({("simulator", "lobby_1")})
    assert device is not None
    assert (device.name, device.model, device.sw_version, device.location) == (
        "Machine lobby_1",
        "Fridge 9000",
        "1.0.0",
        "Main lobby",
    )
    assert machine.attributes["device_id"] == device.id
    assert slot.attributes["device_id"] == device.id
    assert temperature.attributes["device_id"] == device.id
    other = device_registry(hub).async_get_device({("simulator", "kiosk_2")})
    assert other is not None
    assert (other.name, other.location) == ("Kiosk Two", None)
    assert other.id != device.id
    kiosk_slot = hub.states.get("slot.kiosk_2_a1")
    assert kiosk_slot is not None and kiosk_slot.attributes["device_id"] == other.id
    assert "location" not in hub.states.get("machine.kiosk_2").attributes  # type: ignore[union-attr]


async def run_six_hours(tmp_path: Path) -> tuple[dict[str, str], Counter[str], int, int, int]:
    """Six simulated hours on a fresh hub: (slot states, completed per slot, revenue, ...)."""
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    vends = record(hub, EVENT_VEND_COMPLETED)
    runtime = await setup_simulator(hub, simulator_config())
    for _ in range(6):
        await runtime.async_step(3600)
    slots = {eid: hub.states.get(eid).state for eid in hub.states.async_entity_ids("slot")}  # type: ignore[union-attr]
    completed = Counter(e.data["slot"] for e in vends)
    machine = hub.states.get("machine.lobby_1")
    cash = hub.states.get("sensor.lobby_1_cash_box")
    assert machine is not None and cash is not None
    revenue_from_events = sum(e.data["price"] for e in vends)
    cash_from_events = sum(e.data["price"] for e in vends if e.data["payment_method"] == "cash")
    assert machine.attributes["revenue_today"] == revenue_from_events
    assert machine.attributes["sales_today"] == len(vends)
    assert int(cash.state) == cash_from_events
    await hub.async_stop()
    return slots, completed, revenue_from_events, len(vends), cash_from_events


async def test_seeded_sales_are_deterministic_and_stock_drops_by_completed_vends(
    tmp_path: Path,
) -> None:
    first = await run_six_hours(tmp_path / "one")
    second = await run_six_hours(tmp_path / "two")
    assert first == second
    slots, completed, revenue, count, _cash = first
    assert 10 <= count <= 15  # 13 items in stock, 36 customers
    assert slots["slot.lobby_1_a1"] == str(10 - completed["A1"])
    assert slots["slot.lobby_1_a2"] == str(5 - completed["A2"])
    assert revenue == 150 * completed["A1"] + 120 * completed["A2"]


async def test_a_jam_fires_vend_failed_and_leaves_the_stock(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config(machine_config(jam_rate=1.0)))
    events = record(hub, EVENT_VEND_STARTED, EVENT_VEND_COMPLETED, EVENT_VEND_FAILED)
    await runtime.async_step(4 * 3600)
    kinds = Counter(e.event_type for e in events)
    assert kinds["vend_failed"] >= 10
    assert kinds["vend_started"] == kinds["vend_failed"]
    assert kinds["vend_completed"] == 0
    assert {e.data["reason"] for e in events if e.event_type == "vend_failed"} == {"jam"}
    assert hub.states.is_state("slot.lobby_1_a1", "10")
    assert hub.states.is_state("slot.lobby_1_a2", "5")
    machine = hub.states.get("machine.lobby_1")
    assert machine is not None and machine.attributes["sales_today"] == 0
    for started, failed in zip(events[::2], events[1::2], strict=True):
        assert started.context is failed.context
        assert started.data["slot"] == failed.data["slot"]


async def test_temperature_rises_when_the_compressor_is_stopped(hub: Hub) -> None:
    config = simulator_config(machine_config(refrigerated=True), machine_config("kiosk_9"))
    runtime = await setup_simulator(hub, config)
    await runtime.async_step(3600)
    before = float(hub.states.get("sensor.lobby_1_temperature").state)  # type: ignore[union-attr]
    assert 2.0 < before < 6.0
    result = await hub.services.async_call(
        "simulator", "set_compressor", {"machine_id": "lobby_1", "enabled": False}
    )
    assert result == {"machine_id": "lobby_1", "compressor_enabled": False}
    await runtime.async_step(3 * 3600)
    after = hub.states.get("sensor.lobby_1_temperature")
    assert after is not None and float(after.state) > 10.0
    assert after.attributes["compressor"] == "off"
    with pytest.raises(InvalidServiceData, match="kiosk_9 is not refrigerated"):
        await hub.services.async_call(
            "simulator", "set_compressor", {"machine_id": "kiosk_9", "enabled": False}
        )


async def test_services_vend_restock_and_set_door(hub: Hub) -> None:
    await setup_simulator(hub, simulator_config())
    events = record(hub, EVENT_VEND_STARTED, EVENT_VEND_COMPLETED)

    result = await hub.services.async_call(
        "simulator", "vend", {"machine_id": "lobby_1", "slot": "a2", "payment_method": "card"}
    )
    assert result == {
        "machine_id": "lobby_1",
        "slot": "A2",
        "product": "Crisps",
        "price": 120,
        "currency": "EUR",
        "payment_method": "card",
        "outcome": "completed",
        "reason": None,
        "stock": 4,
        "event_id": events[1].data["event_id"],
        "vend_id": events[1].data["vend_id"],
    }
    assert hub.states.is_state("slot.lobby_1_a2", "4")
    assert hub.states.is_state("sensor.lobby_1_cash_box", "0")  # paid by card
    await hub.services.async_call("simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"})
    assert hub.states.is_state("slot.lobby_1_a1", "9")
    assert hub.states.is_state("sensor.lobby_1_cash_box", "150")
    machine = hub.states.get("machine.lobby_1")
    assert machine is not None
    assert (machine.attributes["sales_today"], machine.attributes["revenue_today"]) == (2, 270)

    result = await hub.services.async_call(
        "simulator", "restock", {"machine_id": "lobby_1", "slot": "A2"}
    )
    assert result == {"machine_id": "lobby_1", "slots": {"A2": 8}}
    assert hub.states.is_state("slot.lobby_1_a2", "8")
    assert hub.states.is_state("slot.lobby_1_a1", "9")
    result = await hub.services.async_call("simulator", "restock", {"machine_id": "lobby_1"})
    assert result == {"machine_id": "lobby_1", "slots": {"A1": 10, "A2": 8}}
    assert hub.states.is_state("slot.lobby_1_a1", "10")

    result = await hub.services.async_call(
        "simulator", "set_door", {"machine_id": "lobby_1", "open": True}
    )
    assert result == {"machine_id": "lobby_1", "door": "open"}
    assert hub.states.is_state("binary_sensor.lobby_1_door", "on")
    await hub.services.async_call("simulator", "set_door", {"machine_id": "lobby_1", "open": "off"})
    assert hub.states.is_state("binary_sensor.lobby_1_door", "off")

    with pytest.raises(InvalidServiceData, match="no machine 'nowhere'"):
        await hub.services.async_call("simulator", "vend", {"machine_id": "nowhere", "slot": "A1"})
    with pytest.raises(InvalidServiceData, match="no slot 'Z9'"):
        await hub.services.async_call("simulator", "vend", {"machine_id": "lobby_1", "slot": "Z9"})
    with pytest.raises(InvalidServiceData, match="payment_method"):
        await hub.services.async_call(
            "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1", "payment_method": "iou"}
        )
    assert hub.states.is_state("slot.lobby_1_a1", "10")


async def test_a_sold_out_slot_fails_a_forced_vend(hub: Hub) -> None:
    slots = {"A1": {"product": "Cola", "price": 150, "capacity": 10, "stock": 0}}
    await setup_simulator(hub, simulator_config(machine_config(slots=slots)))
    failed = record(hub, EVENT_VEND_FAILED)
    result = await hub.services.async_call(
        "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"}
    )
    assert (result["outcome"], result["reason"], result["stock"]) == ("failed", "sold_out", 0)
    assert [e.data["reason"] for e in failed] == ["sold_out"]
    assert hub.states.is_state("slot.lobby_1_a1", "0")


async def test_the_fleet_shortcut_makes_n_machines_quickly(hub: Hub) -> None:
    config = simulator_config(
        machine_config("lobby_1"),
        fleet={"count": 100, "slots_per_machine": 12, "refrigerated_share": 0.3},
    )
    started = time.perf_counter()
    runtime = await setup_simulator(hub, config)
    seconds = time.perf_counter() - started
    assert seconds < 1.0

    machines = hub.states.async_entity_ids("machine")
    assert len(machines) == 101
    assert "machine.sim_001" in machines and "machine.sim_100" in machines
    assert len(hub.states.async_entity_ids("slot")) == 100 * 12 + 2
    refrigerated = [m for m in runtime.machines.values() if m.refrigerated]
    assert 15 <= len(refrigerated) <= 45
    temperature_sensors = [e for e in hub.states.async_entity_ids("sensor") if "temperature" in e]
    assert len(temperature_sensors) == len(refrigerated)
    slot = hub.states.get("slot.sim_042_b6")
    assert slot is not None and int(slot.state) == int(slot.attributes["capacity"]) > 0
    assert len({m.start for m in runtime.machines.values()}) == 1

    messages = await runtime.async_step(3600)
    assert messages > 100
    assert runtime.link.stats.invalid == 0
    assert runtime.link.stats.accepted == runtime.link.stats.received


async def test_the_step_loop_runs_on_its_own(hub: Hub) -> None:
    config = simulator_config(
        machine_config(refrigerated=True, sales_per_hour=600), tick=0.01, speed=6000
    )
    runtime = await setup_simulator(hub, config)
    vends = record(hub, EVENT_VEND_COMPLETED)
    for _ in range(200):
        if len(vends) >= 3:
            break
        await asyncio.sleep(0.01)
    assert len(vends) >= 3
    assert runtime.steps >= 1
    assert runtime.task is not None and not runtime.task.done()
    machine = runtime.machines["lobby_1"]
    assert machine.elapsed == pytest.approx(runtime.steps * 60.0)


async def test_unload_stops_the_loop_and_removes_entities_and_services(hub: Hub) -> None:
    raw = {
        "seed": 1,
        "tick": 0.01,
        "speed": 600,
        "start": START,
        "machines": [machine_config(refrigerated=True)],
        "fleet": {"count": 3},
    }
    plan = plan_integrations(
        {"simulator": raw}, await hub.async_add_executor_job(discover_integrations, None)
    )
    assert plan.issues == []
    manager = IntegrationManager(hub, plan)
    report = await manager.async_setup_all()
    assert report.loaded == ["simulator"], report.failed
    runtime = hub.data["simulator"]
    task = runtime.task
    await asyncio.sleep(0.05)
    assert runtime.steps > 0
    refrigerated = sum(m.refrigerated for m in runtime.machines.values())
    # lobby_1: machine, 2 slots, door, cash box; the fleet: machine, 12 slots, door, cash box
    assert len(hub.states) == 5 + 3 * 15 + refrigerated
    assert len(hub.states.async_entity_ids("machine")) == 4
    assert hub.services.has_service("simulator", "vend")

    assert await manager.async_unload("simulator") is True

    assert task.done() and task.cancelled()
    assert "simulator" not in hub.data
    assert [s for s in hub.states.async_all() if s.domain in SIMULATOR_DOMAINS] == []
    assert async_entities(hub, "simulator") == []
    assert not hub.services.has_service("simulator", "vend")
    assert not hub.services.has_service("simulator", "restock")
    steps = runtime.steps
    await asyncio.sleep(0.05)
    assert runtime.steps == steps

    # set up again (a reload): the same entity ids, full stock, a new loop
    again = await setup_simulator(hub, plan.configs["simulator"])
    assert again is not runtime and again.task is not None and not again.task.done()
    assert hub.states.is_state("machine.lobby_1", "online")
    assert hub.states.is_state("slot.lobby_1_a1", "10")
    assert "slot.lobby_1_a1_2" not in hub.states.async_entity_ids("slot")
    assert len(hub.states) == 5 + 3 * 15 + refrigerated


async def test_unload_hook_alone_stops_the_loop(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config(tick=0.01))
    task = runtime.task
    assert task is not None and not task.done()
    await vendhub_unload(hub=hub)
    assert task.cancelled()
    assert "simulator" not in hub.data
    steps = runtime.steps
    await asyncio.sleep(0.05)
    assert runtime.steps == steps


async def test_activity_summary_counts_vends_revenue_and_failures(hub: Hub) -> None:
    runtime = await setup_simulator(
        hub, simulator_config(machine_config(jam_rate=1.0), summary_interval=3600)
    )
    assert runtime.activity is not None
    runtime.machines["lobby_1"].jam_rate = 0.0
    for _ in range(2):
        await hub.services.async_call("simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"})
    runtime.machines["lobby_1"].jam_rate = 1.0
    await hub.services.async_call("simulator", "vend", {"machine_id": "lobby_1", "slot": "A2"})

    assert runtime.activity.line() == (
        "Simulator, last 3600 s: 2 vends (EUR 3.00), 1 failed (1 jam); 1 of 1 machines online"
    )
    runtime.activity._log(None)
    assert runtime.activity.line().startswith(
        "Simulator, last 3600 s: 0 vends (EUR 0.00), 0 failed;"
    )


async def test_activity_summary_can_be_turned_off(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config(summary_interval=0))
    assert runtime.activity is None


async def test_restock_and_cash_collection_fire_bus_events(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config())
    events = record(hub, "stock_refilled", "cash_collected")
    await hub.services.async_call("simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"})
    await hub.services.async_call("simulator", "restock", {"machine_id": "lobby_1"})
    machine = runtime.machines["lobby_1"]
    await runtime.async_feed("lobby_1", machine.collect_cash())

    refill, collection = events
    assert refill.event_type == "stock_refilled"
    assert refill.data["machine_id"] == "lobby_1"
    assert refill.data["slots"]["A1"] == {"product": "Cola", "added": 1, "stock": 10}
    assert refill.data["slots"]["A2"] == {"product": "Crisps", "added": 3, "stock": 8}
    assert collection.event_type == "cash_collected"
    assert collection.data["amount"] == 150
    assert collection.data["currency"] == "EUR"
    assert refill.data["event_id"] != collection.data["event_id"]


async def test_locked_slots_do_not_sell_until_unlocked(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config(machine_config(sales_per_hour=60)))
    result = await hub.services.async_call(
        "simulator", "lock_slots", {"machine_id": "lobby_1", "slots": ["a1", "A2"]}
    )
    assert result == {"machine_id": "lobby_1", "slots": {"A1": True, "A2": True}}
    assert hub.states.get("slot.lobby_1_a1").attributes["locked"] is True
    for _ in range(3):
        await runtime.async_step(3600)
    assert runtime.machines["lobby_1"].vends_completed == 0
    forced = await hub.services.async_call(
        "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"}
    )
    assert (forced["outcome"], forced["reason"]) == ("failed", "locked")

    await hub.services.async_call(
        "simulator", "lock_slots", {"machine_id": "lobby_1", "locked": False}
    )
    assert hub.states.get("slot.lobby_1_a2").attributes["locked"] is False
    await runtime.async_step(3600)
    assert runtime.machines["lobby_1"].vends_completed > 0
