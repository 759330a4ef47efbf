"""The registries across restarts: async_load_registries, overrides kept, refused files."""

import asyncio
import json
from pathlib import Path

import pytest

from vendhub.core.hub import Hub
from vendhub.helpers.storage import StorageError
from vendhub.registry import (
    RegistriesNotLoaded,
    async_load_registries,
    device_registry,
    entity_registry,
)
from vendhub.registry.device_registry import DeviceRegistry, DisabledBy
from vendhub.registry.entity_registry import EntityRegistry


async def test_accessors_before_loading_say_what_to_do(hub: Hub) -> None:
    with pytest.raises(RegistriesNotLoaded, match="async_load_registries"):
        device_registry(hub)
    with pytest.raises(RegistriesNotLoaded, match="async_load_registries"):
        entity_registry(hub)


async def test_load_registries_puts_them_in_hub_data_once(hub: Hub) -> None:
    await asyncio.gather(async_load_registries(hub), async_load_registries(hub))
    devices, entities = device_registry(hub), entity_registry(hub)

    await async_load_registries(hub)

    assert isinstance(devices, DeviceRegistry)
    assert isinstance(entities, EntityRegistry)
    assert device_registry(hub) is devices
    assert entity_registry(hub) is entities
    assert hub.data["device_registry"] is devices
    assert hub.data["entity_registry"] is entities


async def test_user_overrides_survive_a_restart(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    devices, entities = device_registry(hub), entity_registry(hub)
    lobby = devices.async_get_or_create(
        integration="sim", identifiers={("sim", "lobby_1")}, name="Lobby 1", sw_version="1.0"
    )
    devices.async_update_device(
        lobby.id, name_by_user="Front desk", location="Hall B", disabled_by=DisabledBy.user
    )
    entities.async_get_or_create("slot", "sim", "lobby_1-a1", device_id=lobby.id)
    entities.async_get_or_create("sensor", "sim", "lobby_1-temp", original_name="Temperature")
    entities.async_update_entity("slot.lobby_1_a1", new_entity_id="slot.cola", name="Cola")
    entities.async_update_entity("sensor.temperature", disabled_by=DisabledBy.user)
    await hub.async_stop()

    restarted = Hub(tmp_path)
    await async_load_registries(restarted)
    devices, entities = device_registry(restarted), entity_registry(restarted)

    device = devices.async_get_device({("sim", "lobby_1")})
    assert device is not None
    assert device.id == lobby.id
    assert (device.name, device.name_by_user) == ("Lobby 1", "Front desk")
    assert device.location == "Hall B"
    assert device.disabled_by is DisabledBy.user
    assert device.created_at == lobby.created_at
    assert entities.async_get_entity_id("slot", "sim", "lobby_1-a1") == "slot.cola"
    cola = entities.async_get_or_create("slot", "sim", "lobby_1-a1", original_name="A1")
    assert (cola.entity_id, cola.name, cola.original_name, cola.device_id) == (
        "slot.cola",
        "Cola",
        "A1",
        lobby.id,
    )
    temperature = entities.async_get("sensor.temperature")
    assert temperature is not None
    assert temperature.disabled_by is DisabledBy.user
    assert temperature.original_name == "Temperature"
    await restarted.async_stop()


async def test_restart_writes_each_registry_once(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    for number in range(20):
        entity_registry(hub).async_get_or_create("slot", "sim", f"a{number}")
    await hub.async_stop()

    saved = json.loads((tmp_path / ".storage" / "core.entity_registry").read_text())
    assert [item["entity_id"] for item in saved["data"]["entities"]] == [
        f"slot.a{number}" for number in range(20)
    ]
    assert entity_registry(hub)._store.writes == 1
    assert not (tmp_path / ".storage" / "core.device_registry").exists()


async def test_newer_registry_file_stops_the_load_and_is_kept(tmp_path: Path) -> None:
    storage = tmp_path / ".storage"
    storage.mkdir()
    raw = json.dumps(
        {"version": 2, "minor_version": 1, "key": "core.entity_registry", "data": {}}
    ).encode()
    (storage / "core.entity_registry").write_bytes(raw)
    hub = Hub(tmp_path)

    with pytest.raises(StorageError, match=r"core.entity_registry.*2\.1.*1\.x"):
        await async_load_registries(hub)

    with pytest.raises(RegistriesNotLoaded):
        entity_registry(hub)
    await hub.async_stop()
    assert (storage / "core.entity_registry").read_bytes() == raw


async def test_corrupt_registry_file_starts_empty_and_keeps_the_bytes(tmp_path: Path) -> None:
    storage = tmp_path / ".storage"
    storage.mkdir()
    (storage / "core.device_registry").write_bytes(b"\x00\x00 truncated")
    hub = Hub(tmp_path)

    await async_load_registries(hub)

    assert dict(device_registry(hub).devices) == {}
    [aside] = list(storage.glob("core.device_registry.corrupt-*"))
    assert aside.read_bytes() == b"\x00\x00 truncated"
    await hub.async_stop()
