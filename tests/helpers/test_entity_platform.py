"""async_add_entities / async_remove_entities, and live reactions to registry changes."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vendhub.core.hub import Hub
from vendhub.helpers.entity import DeviceInfo, Entity
from vendhub.helpers.entity_platform import (
    DuplicateEntityError,
    async_add_entities,
    async_entities,
    async_remove_entities,
)
from vendhub.registry import (
    RegistriesNotLoaded,
    async_load_registries,
    device_registry,
    entity_registry,
)
from vendhub.registry.device_registry import DisabledBy

LOBBY = DeviceInfo(
    identifiers={("sim", "lobby_1")},
    name="Lobby 1",
    manufacturer="Acme",
    model="Snack 9000",
    sw_version="2.0",
    location="Lobby",
)


class Slot(Entity):
    domain = "slot"

    def __init__(self, code: str, stock: int = 5, device: DeviceInfo | None = LOBBY) -> None:
        self._attr_unique_id = f"lobby_1-{code}"
        self._attr_name = f"Lobby 1 {code}"
        self._attr_state = stock
        self._attr_device_info = device
        self.journal: list[str] = []

    async def async_added_to_hub(self) -> None:
        self.journal.append("added")
        self.async_on_remove(lambda: self.journal.append("cleanup"))

    async def async_will_remove_from_hub(self) -> None:
        self.journal.append("will_remove")


class Door(Entity):
    domain = "binary_sensor"
    _attr_unique_id = "lobby_1-door"
    _attr_name = "Door"
    _attr_state = "off"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    yield hub
    await hub.async_stop()


async def test_add_entities_registers_device_entities_and_states(hub: Hub) -> None:
    slot_a1, slot_a2, door = Slot("A1", 7), Slot("A2", 0), Door()

    added = await async_add_entities(hub, "sim", [slot_a1, slot_a2, door])

    assert added == [slot_a1, slot_a2, door]
    assert [entity.entity_id for entity in added] == [
        "slot.lobby_1_a1",
        "slot.lobby_1_a2",
        "binary_sensor.door",
    ]
    device = device_registry(hub).async_get_device({("sim", "lobby_1")})
    assert device is not None
    assert (device.name, device.manufacturer, device.model, device.sw_version) == (
        "Lobby 1",
        "Acme",
        "Snack 9000",
        "2.0",
    )
    assert (device.integration, device.location) == ("sim", "Lobby")
    assert [entry.entity_id for entry in entity_registry(hub).entities_for_device(device.id)] == [
        "slot.lobby_1_a1",
        "slot.lobby_1_a2",
    ]
    assert slot_a1.registry_entry is not None
    assert slot_a1.registry_entry.device_id == device.id
    assert slot_a1.hub is hub
    assert door.registry_entry is not None
    assert door.registry_entry.device_id is None
    assert hub.states.get("slot.lobby_1_a1").state == "7"  # type: ignore[union-attr]
    assert hub.states.get("slot.lobby_1_a2").state == "0"  # type: ignore[union-attr]
    assert hub.states.get("binary_sensor.door").state == "off"  # type: ignore[union-attr]
    assert slot_a1.journal == ["added"]
    assert async_entities(hub, "sim") == [slot_a1, slot_a2, door]


async def test_duplicate_unique_ids_are_refused_before_anything_is_added(hub: Hub) -> None:
    with pytest.raises(DuplicateEntityError, match="two slot entities with unique_id 'lobby_1-A1'"):
        await async_add_entities(hub, "sim", [Slot("A1"), Slot("A1")])
    assert len(hub.states) == 0
    assert len(entity_registry(hub).entities) == 0

    await async_add_entities(hub, "sim", [Slot("A1")])
    with pytest.raises(DuplicateEntityError):
        await async_add_entities(hub, "sim", [Slot("A1")])
    # another integration may use the same unique id
    [other] = await async_add_entities(hub, "mdb", [Slot("A1", device=None)])
    assert other.entity_id == "slot.lobby_1_a1_2"


async def test_entities_need_a_domain_and_a_unique_id(hub: Hub) -> None:
    class NoDomain(Entity):
        _attr_unique_id = "x"

    class NoUniqueId(Entity):
        domain = "sensor"

    with pytest.raises(TypeError, match="no class attribute 'domain'"):
        await async_add_entities(hub, "sim", [NoDomain()])

    class BadDomain(Entity):
        domain = "Binary-Sensor"
        _attr_unique_id = "x"

    with pytest.raises(ValueError, match="has no unique_id"):
        await async_add_entities(hub, "sim", [NoUniqueId()])
    with pytest.raises(ValueError, match="invalid domain 'Binary-Sensor'"):
        await async_add_entities(hub, "sim", [Door(), BadDomain()])
    assert len(hub.states) == 0
    assert len(entity_registry(hub).entities) == 0


async def test_the_same_entity_object_cannot_be_added_twice(hub: Hub) -> None:
    door = Door()
    await async_add_entities(hub, "sim", [door])

    with pytest.raises(ValueError, match="was already added"):
        await async_add_entities(hub, "sim", [door])
    assert async_entities(hub, "sim") == [door]


async def test_registries_must_be_loaded(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    with pytest.raises(RegistriesNotLoaded):
        await async_add_entities(hub, "sim", [Door()])
    await hub.async_stop()


async def test_disabled_entities_are_registered_but_not_written(hub: Hub) -> None:
    await async_add_entities(hub, "sim", [Slot("A1")])
    await async_remove_entities(hub, "sim")
    entity_registry(hub).async_update_entity("slot.lobby_1_a1", disabled_by=DisabledBy.user)

    slot = Slot("A1")
    added = await async_add_entities(hub, "sim", [slot])

    assert added == []
    assert slot.entity_id == "slot.lobby_1_a1"
    assert hub.states.get("slot.lobby_1_a1") is None
    assert slot.journal == []
    slot.async_write_state()  # harmless: a disabled entity writes nothing
    assert hub.states.get("slot.lobby_1_a1") is None


async def test_remove_entities_runs_hooks_and_keeps_registry_entries(hub: Hub) -> None:
    slot_a1, slot_a2 = Slot("A1"), Slot("A2")
    await async_add_entities(hub, "sim", [slot_a1, slot_a2])
    [door] = await async_add_entities(hub, "other", [Door()])

    removed = await async_remove_entities(hub, "sim")

    assert removed == 2
    assert slot_a1.journal == ["added", "will_remove", "cleanup"]
    assert hub.states.async_entity_ids() == ["binary_sensor.door"]
    assert async_entities(hub, "sim") == []
    assert async_entities(hub, "other") == [door]
    assert sorted(entity_registry(hub).entities) == [
        "binary_sensor.door",
        "slot.lobby_1_a1",
        "slot.lobby_1_a2",
    ]
    assert await async_remove_entities(hub, "sim") == 0
    slot_a1.async_write_state()  # a removed entity writes nothing
    assert hub.states.get("slot.lobby_1_a1") is None

    again = Slot("A1", stock=9)
    await async_add_entities(hub, "sim", [again])
    assert again.entity_id == "slot.lobby_1_a1"
    assert hub.states.get("slot.lobby_1_a1").state == "9"  # type: ignore[union-attr]


async def test_an_entity_that_fails_to_add_is_left_out(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Slot):
        async def async_added_to_hub(self) -> None:
            self.async_on_remove(lambda: self.journal.append("cleanup"))
            raise RuntimeError("board not answering")

    broken, fine = Broken("A1"), Slot("A2")

    added = await async_add_entities(hub, "sim", [broken, fine])

    assert added == [fine]
    assert broken.journal == ["cleanup"]
    assert hub.states.async_entity_ids() == ["slot.lobby_1_a2"]
    assert async_entities(hub, "sim") == [fine]
    assert "Could not add" in caplog.text
    assert "board not answering" in caplog.text


async def test_renaming_moves_the_live_state(hub: Hub) -> None:
    [slot] = await async_add_entities(hub, "sim", [Slot("A1", 4)])

    entity_registry(hub).async_update_entity("slot.lobby_1_a1", new_entity_id="slot.cola")

    assert slot.entity_id == "slot.cola"
    assert hub.states.get("slot.lobby_1_a1") is None
    assert hub.states.get("slot.cola").state == "4"  # type: ignore[union-attr]
    slot._attr_state = 3
    slot.async_write_state()
    assert hub.states.get("slot.cola").state == "3"  # type: ignore[union-attr]
    assert hub.states.get("slot.lobby_1_a1") is None


async def test_new_name_is_written_at_once(hub: Hub) -> None:
    await async_add_entities(hub, "sim", [Slot("A1")])

    entity_registry(hub).async_update_entity("slot.lobby_1_a1", name="Cola")

    assert hub.states.get("slot.lobby_1_a1").attributes["friendly_name"] == "Cola"  # type: ignore[union-attr]


async def test_disabling_and_enabling_a_live_entity(hub: Hub) -> None:
    [slot] = await async_add_entities(hub, "sim", [Slot("A1")])
    registry = entity_registry(hub)

    registry.async_update_entity("slot.lobby_1_a1", disabled_by=DisabledBy.user)
    await hub.async_block_till_done()
    assert hub.states.get("slot.lobby_1_a1") is None
    assert slot.journal == ["added", "will_remove", "cleanup"]

    registry.async_update_entity("slot.lobby_1_a1", disabled_by=None)
    await hub.async_block_till_done()
    assert hub.states.get("slot.lobby_1_a1").state == "5"  # type: ignore[union-attr]
    assert slot.journal == ["added", "will_remove", "cleanup", "added"]


async def test_disabled_device_takes_its_entities_out(hub: Hub) -> None:
    slot, door = Slot("A1"), Door()
    await async_add_entities(hub, "sim", [slot, door])
    devices = device_registry(hub)
    device = devices.async_get_device({("sim", "lobby_1")})
    assert device is not None

    devices.async_update_device(device.id, disabled_by=DisabledBy.user)
    await hub.async_block_till_done()
    assert hub.states.async_entity_ids() == ["binary_sensor.door"]

    devices.async_update_device(device.id, disabled_by=None)
    await hub.async_block_till_done()
    assert sorted(hub.states.async_entity_ids()) == ["binary_sensor.door", "slot.lobby_1_a1"]


async def test_removed_registry_entry_takes_the_entity_out(hub: Hub) -> None:
    [slot] = await async_add_entities(hub, "sim", [Slot("A1")])
    device = device_registry(hub).async_get_device({("sim", "lobby_1")})
    assert device is not None

    device_registry(hub).async_remove_device(device.id)
    await hub.async_block_till_done()

    assert hub.states.get("slot.lobby_1_a1") is None
    assert entity_registry(hub).async_get("slot.lobby_1_a1") is None
    assert slot.journal == ["added", "will_remove", "cleanup"]
    assert async_entities(hub, "sim") == []


async def test_ids_and_overrides_survive_a_restart(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    await async_add_entities(hub, "sim", [Slot("A1"), Slot("A2"), Door()])
    registry = entity_registry(hub)
    registry.async_update_entity("slot.lobby_1_a1", new_entity_id="slot.cola", name="Cola")
    registry.async_update_entity("slot.lobby_1_a2", disabled_by=DisabledBy.user)
    devices = device_registry(hub)
    device = devices.async_get_device({("sim", "lobby_1")})
    assert device is not None
    devices.async_update_device(device.id, name_by_user="Front desk")
    await hub.async_stop()

    restarted = Hub(tmp_path)
    await async_load_registries(restarted)
    cola, water, door = Slot("A1", 8), Slot("A2"), Door()
    added = await async_add_entities(restarted, "sim", [cola, water, door])

    assert added == [cola, door]
    assert (cola.entity_id, water.entity_id, door.entity_id) == (
        "slot.cola",
        "slot.lobby_1_a2",
        "binary_sensor.door",
    )
    state = restarted.states.get("slot.cola")
    assert state is not None
    assert (state.state, state.attributes["friendly_name"]) == ("8", "Cola")
    assert sorted(restarted.states.async_entity_ids()) == ["binary_sensor.door", "slot.cola"]
    restarted_device = device_registry(restarted).async_get_device({("sim", "lobby_1")})
    assert restarted_device is not None
    assert (restarted_device.id, restarted_device.name_by_user) == (device.id, "Front desk")
    await restarted.async_stop()
