"""Discovery and adoption over a real broker: announce, pending, adopt, config, remove."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.mosquitto import Mosquitto
from vendhub.core import Hub
from vendhub.core.errors import InvalidServiceData
from vendhub.registry import device_registry, entity_registry

from .conftest import (
    MachineFactory,
    adopted_machine,
    link_config,
    make_hub,
    record,
    start_link,
    stop_hub,
    until,
)


async def test_an_announced_machine_waits_as_pending_until_adopted(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory, tmp_path: Path
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    pending_events = record(hub, "mqtt_machine_pending")
    machine = await machines("lobby_1")
    await machine.status("online")
    await machine.announce(refrigerated=True)
    await until(lambda: runtime.directory.get("lobby_1"))

    result = await hub.services.async_call("mqtt", "pending", {})
    assert [entry["machine_id"] for entry in result["pending"]] == ["lobby_1"]
    entry = result["pending"][0]
    assert entry["model"] == "VM-200"
    assert entry["firmware"] == "2.4.1"
    assert entry["refrigerated"] is True
    assert entry["slots"] == ["A1", "A2"]
    assert entry["adopted"] is False
    assert [event.data["machine_id"] for event in pending_events] == ["lobby_1"]
    # nothing of it is in the hub yet, and what it sends besides status is dropped
    assert hub.states.get("machine.lobby_1") is None
    await machine.event("door_opened")
    await until(lambda: hub.states.is_state("sensor.mqtt_link_errors", "1"))
    errors = hub.states.get("sensor.mqtt_link_errors")
    assert errors is not None
    assert errors.attributes["not_adopted"] == 1
    assert "lobby_1" in errors.attributes["last_error"]
    assert machine.of("config") == []

    adopted = await hub.services.async_call(
        "mqtt", "adopt", {"machine_id": "lobby_1", "name": "Lobby 1", "location": "Main lobby"}
    )
    assert adopted["config_published"] is True
    assert set(adopted["entities"]) == {
        "machine.lobby_1",
        "slot.lobby_1_a1",
        "slot.lobby_1_a2",
        "binary_sensor.lobby_1_door",
        "sensor.lobby_1_temperature",
        "sensor.lobby_1_cash_box",
        "sensor.lobby_1_link_errors",
    }
    machine_state = hub.states.get("machine.lobby_1")
    assert machine_state is not None
    assert machine_state.state == "online"
    assert machine_state.attributes["model"] == "VM-200"
    assert machine_state.attributes["firmware"] == "2.4.1"
    assert machine_state.attributes["location"] == "Main lobby"
    assert machine_state.attributes["friendly_name"] == "Lobby 1"
    slot = hub.states.get("slot.lobby_1_a1")
    assert slot is not None and slot.state == "8"
    assert (slot.attributes["product"], slot.attributes["price"]) == ("Cola", 150)
    assert (slot.attributes["capacity"], slot.attributes["par_level"]) == (10, 3)
    assert hub.states.is_state("sensor.lobby_1_temperature", "unknown")
    assert hub.states.is_state("binary_sensor.lobby_1_door", "unknown")
    assert hub.states.is_state("sensor.lobby_1_link_errors", "0")

    device = device_registry(hub).async_get_device({("mqtt", "lobby_1")})
    assert device is not None
    assert (device.name, device.model, device.sw_version) == ("Lobby 1", "VM-200", "2.4.1")
    assert entity_registry(hub).async_get("slot.lobby_1_a1").device_id == device.id

    config = (await machine.wait_for(lambda: machine.of("config")))[0].json
    assert config["v"] == 1
    assert config["version"] == 1
    assert config["mode"] == "normal"
    assert config["slots"] == {
        "A1": {"product": "Cola", "price": 150, "capacity": 10, "par": 3},
        "A2": {"product": "Crisps", "price": 120, "capacity": 8, "par": 2},
    }
    assert (await hub.services.async_call("mqtt", "pending", {}))["pending"] == []

    await runtime.directory.async_flush()
    stored = json.loads((tmp_path / ".storage" / "mqtt.machines").read_text())
    [saved] = stored["data"]["machines"]
    assert (saved["machine_id"], saved["adopted"], saved["name"]) == ("lobby_1", True, "Lobby 1")
    assert saved["config"]["version"] == 1
    assert saved["config_published"] == 1


async def test_the_config_is_retained_and_adoption_survives_a_restart(
    broker: Mosquitto, prefix: str, machines: MachineFactory, tmp_path: Path
) -> None:
    hub = await make_hub(tmp_path)
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("kiosk_2")
    await adopted_machine(hub, runtime, machine, refrigerated=False)
    assert hub.states.get("sensor.kiosk_2_temperature") is None  # not refrigerated
    await stop_hub(hub)

    # a machine that connects later gets the retained config at once
    late = await machines("kiosk_2")
    config = (await late.wait_for(lambda: late.of("config")))[0]
    assert config.retain is True
    assert config.json["version"] == 1

    again = await make_hub(tmp_path)
    try:
        runtime = await start_link(again, link_config(broker, prefix))
        assert list(runtime.entities) == ["kiosk_2"]
        # the retained status brings it online again
        await until(lambda: again.states.is_state("machine.kiosk_2", "online"))
        assert again.states.is_state("slot.kiosk_2_a2", "5")
        assert (await again.services.async_call("mqtt", "pending", {}))["pending"] == []
    finally:
        await stop_hub(again)


async def test_auto_adopt_adopts_every_machine_that_announces_itself(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    await start_link(hub, link_config(broker, prefix, auto_adopt=True))
    adopted = record(hub, "mqtt_machine_adopted")
    machine = await machines("gym_3")
    await machine.status("online")
    await machine.announce()
    await until(lambda: adopted)
    assert [event.data["machine_id"] for event in adopted] == ["gym_3"]
    assert hub.states.is_state("machine.gym_3", "online")
    assert (await machine.wait_for(lambda: machine.of("config")))[0].json["version"] == 1


async def test_a_fleet_adopted_at_once_settles_out_of_the_collectors_reach(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settled: list[float] = []
    monkeypatch.setattr("vendhub_integrations.mqtt.runtime.HEAP_SETTLE_MACHINES", 3)
    monkeypatch.setattr("vendhub_integrations.mqtt.runtime.HEAP_SETTLE_SECONDS", 0.3)
    monkeypatch.setattr(
        "vendhub_integrations.mqtt.runtime.freeze_startup_heap", lambda: settled.append(1) or 0
    )
    await start_link(hub, link_config(broker, prefix, auto_adopt=True))
    adopted = record(hub, "mqtt_machine_adopted")
    for number in range(2):
        machine = await machines(f"shop_{number}")
        await machine.status("online")
        await machine.announce()
    await until(lambda: len(adopted) == 2)
    await asyncio.sleep(0.5)
    assert settled == []  # two machines are not worth a collection
    for number in range(2, 5):
        machine = await machines(f"shop_{number}")
        await machine.status("online")
        await machine.announce()
    await until(lambda: len(adopted) == 5)
    await until(lambda: settled, timeout=3)
    await asyncio.sleep(0.5)
    assert settled == [1]  # once, after the last of them


async def test_publish_config_changes_prices_and_mode_with_a_new_version(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)

    result = await hub.services.async_call(
        "mqtt",
        "publish_config",
        {
            "machine_id": "lobby_1",
            "mode": "service",
            "slots": {
                "A1": {"price": 170},
                "B1": {"product": "Water", "price": 100, "capacity": 12},
            },
        },
    )
    assert result["version"] == 2
    assert result["published"] is True
    await machine.wait_for(lambda: len(machine.of("config")) == 2)
    config = machine.of("config")[-1].json
    assert config["version"] == 2
    assert config["mode"] == "service"
    assert config["slots"]["A1"] == {"product": "Cola", "price": 170, "capacity": 10, "par": 3}
    assert config["slots"]["B1"] == {"product": "Water", "price": 100, "capacity": 12, "par": 3}
    assert hub.states.get("slot.lobby_1_a1").attributes["price"] == 170
    assert hub.states.get("machine.lobby_1").attributes["mode"] == "service"
    new_slot = hub.states.get("slot.lobby_1_b1")
    assert new_slot is not None and new_slot.attributes["product"] == "Water"

    with pytest.raises(InvalidServiceData, match="A2 > par: may be at most the capacity 8, got 99"):
        await hub.services.async_call(
            "mqtt", "publish_config", {"machine_id": "lobby_1", "slots": {"A2": {"par": 99}}}
        )
    with pytest.raises(InvalidServiceData, match="not adopted"):
        await machine_not_adopted(hub, machines)


async def machine_not_adopted(hub: Hub, machines: MachineFactory) -> None:
    other = await machines("nobody_9")
    await other.announce()
    runtime = hub.data["mqtt"]
    await until(lambda: runtime.directory.get("nobody_9"))
    await hub.services.async_call("mqtt", "publish_config", {"machine_id": "nobody_9"})


async def test_remove_forgets_the_machine_and_clears_its_retained_config(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    device = device_registry(hub).async_get_device({("mqtt", "lobby_1")})
    assert device is not None

    result = await hub.services.async_call("mqtt", "remove", {"machine_id": "lobby_1"})
    assert result == {"machine_id": "lobby_1", "was_adopted": True, "cleared": True}
    await until(lambda: hub.states.get("slot.lobby_1_a1") is None)
    assert hub.states.get("machine.lobby_1") is None
    assert device_registry(hub).async_get_device({("mqtt", "lobby_1")}) is None
    assert runtime.directory.get("lobby_1") is None
    # the retained config is cleared: the machine got an empty config message
    await machine.wait_for(lambda: any(not m.payload for m in machine.of("config")))
    # messages from it are dropped again, and it comes back as pending when it announces
    await machine.announce()
    await until(lambda: runtime.directory.get("lobby_1"))
    assert runtime.directory.get("lobby_1").adopted is False
    with pytest.raises(InvalidServiceData, match="no machine 'ghost_1' has announced"):
        await hub.services.async_call("mqtt", "adopt", {"machine_id": "ghost_1"})
