"""EntityRegistry: stable ids, collisions, overrides, renames, removal, events."""

from typing import Any

import pytest

from vendhub.core.errors import InvalidEntityId
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.registry.device_registry import DeviceRegistry, DisabledBy
from vendhub.registry.entity_registry import (
    EVENT_ENTITY_REGISTRY_UPDATED,
    EntityIdInUse,
    EntityNotFound,
    EntityRegistry,
)


def record_events(hub: Hub) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def listener(event: Event) -> None:
        events.append(dict(event.data))

    hub.bus.async_listen(EVENT_ENTITY_REGISTRY_UPDATED, listener)
    return events


async def test_create_entry(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    events = record_events(hub)

    entry = registry.async_get_or_create(
        "sensor",
        "simulator",
        "lobby_1-temperature",
        suggested_object_id="Lobby 1 Temperature",
        device_id="dev1",
        original_name="Temperature",
        unit_of_measurement="°C",
    )

    assert entry.entity_id == "sensor.lobby_1_temperature"
    assert (entry.domain, entry.integration, entry.unique_id) == (
        "sensor",
        "simulator",
        "lobby_1-temperature",
    )
    assert (entry.device_id, entry.original_name, entry.unit_of_measurement) == (
        "dev1",
        "Temperature",
        "°C",
    )
    assert (entry.name, entry.icon, entry.disabled_by) == (None, None, None)
    assert registry.async_get("sensor.lobby_1_temperature") is entry
    assert (
        registry.async_get_entity_id("sensor", "simulator", "lobby_1-temperature")
        == "sensor.lobby_1_temperature"
    )
    assert events == [{"action": "create", "entity_id": "sensor.lobby_1_temperature"}]


@pytest.mark.parametrize(
    ("suggested", "name", "unique_id", "expected"),
    [
        ("Front Door", "Door", "u1", "binary_sensor.front_door"),
        (None, "Door Ä", "u1", "binary_sensor.door_a"),
        (None, None, "Lobby-1:door", "binary_sensor.lobby_1_door"),
        (None, None, "###", "binary_sensor.unnamed"),
    ],
)
async def test_entity_id_comes_from_suggestion_then_name_then_unique_id(
    hub: Hub, suggested: str | None, name: str | None, unique_id: str, expected: str
) -> None:
    entry = EntityRegistry(hub).async_get_or_create(
        "binary_sensor", "sim", unique_id, suggested_object_id=suggested, original_name=name
    )
    assert entry.entity_id == expected


async def test_same_key_gives_the_same_entry(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    first = registry.async_get_or_create("slot", "sim", "a1", original_name="A1")
    second = registry.async_get_or_create("slot", "sim", "a1", original_name="A1")

    assert second is first
    assert len(registry.entities) == 1


async def test_collisions_get_numbered_suffixes(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    hub.states.async_set("sensor.temperature_2", "20")

    ids = [
        registry.async_get_or_create(
            "sensor", integration, "t", original_name="Temperature"
        ).entity_id
        for integration in ("sim", "mdb", "mqtt", "other")
    ]

    assert ids == [
        "sensor.temperature",
        "sensor.temperature_3",  # _2 is a state set outside the registry
        "sensor.temperature_4",
        "sensor.temperature_5",
    ]


async def test_same_unique_id_in_another_domain_is_another_entity(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    slot = registry.async_get_or_create("slot", "sim", "a1")
    sensor = registry.async_get_or_create("sensor", "sim", "a1")

    assert (slot.entity_id, sensor.entity_id) == ("slot.a1", "sensor.a1")


async def test_integration_fields_update_but_overrides_stay(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    entry = registry.async_get_or_create("sensor", "sim", "t", original_name="Temp")
    registry.async_update_entity(entry.entity_id, name="Fridge", icon="mdi:fridge")
    events = record_events(hub)

    updated = registry.async_get_or_create(
        "sensor", "sim", "t", original_name="Temperature", unit_of_measurement="°C"
    )

    assert updated.entity_id == "sensor.temp"
    assert (updated.original_name, updated.unit_of_measurement) == ("Temperature", "°C")
    assert (updated.name, updated.icon) == ("Fridge", "mdi:fridge")
    assert events == [
        {
            "action": "update",
            "entity_id": "sensor.temp",
            "changes": {"original_name": "Temp", "unit_of_measurement": None},
        }
    ]


async def test_update_entity_overrides(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    entry = registry.async_get_or_create("slot", "sim", "a1", original_name="A1")

    named = registry.async_update_entity(
        "slot.a1", name="Cola", icon="mdi:bottle-soda", disabled_by=DisabledBy.user
    )
    cleared = registry.async_update_entity("slot.a1", name=None, disabled_by=None)

    assert (named.name, named.icon, named.disabled_by) == ("Cola", "mdi:bottle-soda", "user")
    assert named.disabled
    assert (cleared.name, cleared.icon, cleared.disabled_by) == (None, "mdi:bottle-soda", None)
    assert cleared.created_at == entry.created_at
    assert cleared.modified_at >= named.modified_at >= entry.modified_at


async def test_rename_entity_id(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    registry.async_get_or_create("slot", "sim", "a1")
    events = record_events(hub)

    renamed = registry.async_update_entity("slot.a1", new_entity_id="slot.cola")

    assert renamed.entity_id == "slot.cola"
    assert registry.async_get("slot.a1") is None
    assert registry.async_get("slot.cola") is renamed
    assert registry.async_get_entity_id("slot", "sim", "a1") == "slot.cola"
    assert events == [
        {
            "action": "update",
            "entity_id": "slot.cola",
            "old_entity_id": "slot.a1",
            "changes": {"entity_id": "slot.a1"},
        }
    ]
    # the old id is free again
    reused = registry.async_get_or_create("slot", "sim", "b1", suggested_object_id="a1")
    assert reused.entity_id == "slot.a1"


@pytest.mark.parametrize("bad", ["slot.Cola", "slot", "slot.a__b", "slot._a", "slot.a-b"])
async def test_rename_to_invalid_id_is_refused(hub: Hub, bad: str) -> None:
    registry = EntityRegistry(hub)
    registry.async_get_or_create("slot", "sim", "a1")

    with pytest.raises(InvalidEntityId, match=r"cannot rename slot\.a1"):
        registry.async_update_entity("slot.a1", new_entity_id=bad)
    assert registry.async_get("slot.a1") is not None


async def test_rename_to_other_domain_is_refused(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    registry.async_get_or_create("slot", "sim", "a1")

    with pytest.raises(InvalidEntityId, match="domain must stay 'slot'"):
        registry.async_update_entity("slot.a1", new_entity_id="sensor.a1")


async def test_rename_to_taken_id_is_refused(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    registry.async_get_or_create("slot", "sim", "a1")
    registry.async_get_or_create("slot", "sim", "a2")
    hub.states.async_set("slot.manual", "3")

    with pytest.raises(EntityIdInUse, match="another entity in the registry"):
        registry.async_update_entity("slot.a1", new_entity_id="slot.a2")
    with pytest.raises(EntityIdInUse, match="a state with that id already exists"):
        registry.async_update_entity("slot.a1", new_entity_id="slot.manual")
    assert sorted(registry.entities) == ["slot.a1", "slot.a2"]


async def test_remove_and_unknown(hub: Hub) -> None:
    registry = EntityRegistry(hub)
    registry.async_get_or_create("slot", "sim", "a1")
    events = record_events(hub)

    registry.async_remove("slot.a1")

    assert registry.async_get("slot.a1") is None
    assert registry.async_get_entity_id("slot", "sim", "a1") is None
    assert events == [{"action": "remove", "entity_id": "slot.a1"}]
    with pytest.raises(EntityNotFound, match=r"slot\.a1"):
        registry.async_remove("slot.a1")
    with pytest.raises(EntityNotFound):
        registry.async_update_entity("slot.a1", name="x")


async def test_entities_for_device_and_device_removal(hub: Hub) -> None:
    devices = DeviceRegistry(hub)
    registry = EntityRegistry(hub)
    lobby = devices.async_get_or_create(integration="sim", identifiers={("sim", "lobby")})
    gym = devices.async_get_or_create(integration="sim", identifiers={("sim", "gym")})
    a1 = registry.async_get_or_create("slot", "sim", "lobby-a1", device_id=lobby.id)
    a2 = registry.async_get_or_create("slot", "sim", "lobby-a2", device_id=lobby.id)
    g1 = registry.async_get_or_create("slot", "sim", "gym-a1", device_id=gym.id)

    assert registry.entities_for_device(lobby.id) == [a1, a2]

    devices.async_remove_device(lobby.id)

    assert registry.entities_for_device(lobby.id) == []
    assert list(registry.entities) == [g1.entity_id]


@pytest.mark.parametrize("unique_id", ["", 5, None])
async def test_unique_id_must_be_a_string(hub: Hub, unique_id: Any) -> None:
    with pytest.raises(ValueError, match="unique_id of a slot entity"):
        EntityRegistry(hub).async_get_or_create("slot", "sim", unique_id)


@pytest.mark.parametrize("domain", ["Slot", "my-domain", "", "_x"])
async def test_invalid_domain_is_refused(hub: Hub, domain: str) -> None:
    with pytest.raises(ValueError, match="invalid entity domain"):
        EntityRegistry(hub).async_get_or_create(domain, "sim", "a1")
