"""DeviceRegistry: create, update, override, remove, events, persistence."""

import asyncio
import json
from typing import Any

import pytest

from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.registry.device_registry import (
    EVENT_DEVICE_REGISTRY_UPDATED,
    DeviceNotFound,
    DeviceRegistry,
    DisabledBy,
)

LOBBY = {("simulator", "lobby_1")}


def record_events(hub: Hub) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def listener(event: Event) -> None:
        events.append(dict(event.data))

    hub.bus.async_listen(EVENT_DEVICE_REGISTRY_UPDATED, listener)
    return events


async def test_create_returns_a_frozen_entry(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    events = record_events(hub)

    device = registry.async_get_or_create(
        integration="simulator",
        identifiers=LOBBY,
        name="Lobby 1",
        manufacturer="Acme",
        model="Snack 9000",
        sw_version="1.2.0",
        location="Lobby",
    )

    assert len(device.id) == 32
    assert device.identifiers == frozenset(LOBBY)
    assert (device.integration, device.name, device.manufacturer) == (
        "simulator",
        "Lobby 1",
        "Acme",
    )
    assert (device.model, device.sw_version, device.location) == ("Snack 9000", "1.2.0", "Lobby")
    assert device.name_by_user is None
    assert device.disabled_by is None
    assert device.created_at == device.modified_at
    assert device.created_at.tzinfo is not None
    assert registry.async_get(device.id) is device
    assert registry.async_get_device([("simulator", "lobby_1")]) is device
    assert dict(registry.devices) == {device.id: device}
    assert events == [{"action": "create", "device_id": device.id}]
    with pytest.raises(AttributeError):
        device.name = "other"  # type: ignore[misc]


async def test_same_identifiers_give_the_same_device(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    first = registry.async_get_or_create(integration="simulator", identifiers=LOBBY, name="L1")
    events = record_events(hub)

    again = registry.async_get_or_create(integration="simulator", identifiers=LOBBY, name="L1")

    assert again is first
    assert events == []
    assert len(registry.devices) == 1


async def test_integration_fields_update_but_none_keeps_them(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    device = registry.async_get_or_create(
        integration="simulator", identifiers=LOBBY, name="L1", sw_version="1.0", model="S9"
    )
    events = record_events(hub)

    updated = registry.async_get_or_create(
        integration="simulator", identifiers=LOBBY, sw_version="1.1"
    )

    assert updated.id == device.id
    assert (updated.name, updated.model, updated.sw_version) == ("L1", "S9", "1.1")
    assert updated.modified_at >= device.modified_at
    assert device.sw_version == "1.0"  # the old value is unchanged
    assert events == [
        {"action": "update", "device_id": device.id, "changes": {"sw_version": "1.0"}}
    ]


async def test_integration_never_clobbers_user_overrides(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    device = registry.async_get_or_create(
        integration="simulator", identifiers=LOBBY, name="L1", location="Lobby"
    )
    registry.async_update_device(device.id, name_by_user="Front desk", location="Hall B")

    again = registry.async_get_or_create(
        integration="simulator", identifiers=LOBBY, name="Lobby one", location="Lobby"
    )

    assert again.name == "Lobby one"
    assert again.name_by_user == "Front desk"
    assert again.location == "Hall B"
    assert again.display_name == "Front desk"


async def test_location_fills_an_empty_one(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    registry.async_get_or_create(integration="simulator", identifiers=LOBBY)

    device = registry.async_get_or_create(
        integration="simulator", identifiers=LOBBY, location="Lobby"
    )

    assert device.location == "Lobby"


async def test_new_identifiers_are_merged(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    device = registry.async_get_or_create(integration="simulator", identifiers=LOBBY)

    merged = registry.async_get_or_create(
        integration="simulator", identifiers={("simulator", "lobby_1"), ("serial", "SN-42")}
    )

    assert merged.id == device.id
    assert merged.identifiers == {("simulator", "lobby_1"), ("serial", "SN-42")}
    assert registry.async_get_device([("serial", "SN-42")]) == merged


async def test_identifiers_of_two_devices_are_refused(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    registry.async_get_or_create(integration="sim", identifiers={("sim", "a")})
    registry.async_get_or_create(integration="sim", identifiers={("sim", "b")})

    with pytest.raises(ValueError, match="2 different devices"):
        registry.async_get_or_create(integration="sim", identifiers={("sim", "a"), ("sim", "b")})


@pytest.mark.parametrize(
    "identifiers",
    [set(), [("only-one",)], [("sim", "")], ["ab"], [("sim", 5)]],
    ids=["none", "one-part", "empty-id", "string", "number"],
)
async def test_bad_identifiers_are_refused(hub: Hub, identifiers: Any) -> None:
    with pytest.raises(ValueError, match="identifier"):
        DeviceRegistry(hub).async_get_or_create(integration="sim", identifiers=identifiers)


async def test_update_device_sets_and_clears_overrides(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    device = registry.async_get_or_create(integration="simulator", identifiers=LOBBY, name="L1")
    events = record_events(hub)

    disabled = registry.async_update_device(device.id, disabled_by="user", name_by_user="Desk")
    cleared = registry.async_update_device(device.id, name_by_user=None)
    unchanged = registry.async_update_device(device.id, location=None)

    assert disabled.disabled_by is DisabledBy.user
    assert disabled.disabled
    assert disabled.name_by_user == "Desk"
    assert cleared.name_by_user is None
    assert cleared.disabled_by is DisabledBy.user
    assert unchanged is cleared
    assert [event["changes"] for event in events] == [
        {"name_by_user": None, "disabled_by": None},
        {"name_by_user": "Desk"},
    ]


async def test_unknown_device_raises(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    with pytest.raises(DeviceNotFound, match="no device with id 'nope'"):
        registry.async_update_device("nope", name_by_user="x")
    with pytest.raises(DeviceNotFound):
        registry.async_remove_device("nope")


async def test_remove_device(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    device = registry.async_get_or_create(integration="simulator", identifiers=LOBBY)
    events = record_events(hub)

    registry.async_remove_device(device.id)

    assert registry.async_get(device.id) is None
    assert registry.async_get_device(LOBBY) is None
    assert events == [{"action": "remove", "device_id": device.id}]
    recreated = registry.async_get_or_create(integration="simulator", identifiers=LOBBY)
    assert recreated.id != device.id


async def test_devices_for_integration(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    lobby = registry.async_get_or_create(integration="simulator", identifiers=LOBBY)
    registry.async_get_or_create(integration="mdb", identifiers={("mdb", "board_1")})

    assert registry.async_devices_for_integration("simulator") == [lobby]


async def test_changes_are_saved_with_delay_and_flushed_on_stop(hub: Hub) -> None:
    registry = DeviceRegistry(hub)
    path = hub.config_dir / ".storage" / "core.device_registry"
    device = registry.async_get_or_create(integration="simulator", identifiers=LOBBY, name="L1")
    registry.async_update_device(device.id, name_by_user="Desk")
    assert not path.exists()

    await hub.async_stop()

    saved = json.loads(path.read_text())
    assert (saved["version"], saved["minor_version"], saved["key"]) == (
        1,
        1,
        "core.device_registry",
    )
    [stored] = saved["data"]["devices"]
    assert stored["id"] == device.id
    assert stored["identifiers"] == [["simulator", "lobby_1"]]
    assert stored["name"] == "L1"
    assert stored["name_by_user"] == "Desk"


async def test_delay_is_settable(hub: Hub) -> None:
    registry = DeviceRegistry(hub, save_delay=0.01)
    registry.async_get_or_create(integration="simulator", identifiers=LOBBY, name="L1")
    registry.async_get_or_create(integration="simulator", identifiers=LOBBY, name="L2")
    await asyncio.sleep(0.05)
    await hub.async_block_till_done()

    path = hub.config_dir / ".storage" / "core.device_registry"
    assert json.loads(path.read_text())["data"]["devices"][0]["name"] == "L2"
