"""Entity: the state and attributes it writes."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vendhub.core.context import Context
from vendhub.core.hub import Hub
from vendhub.helpers.entity import DeviceInfo, Entity
from vendhub.helpers.entity_platform import async_add_entities
from vendhub.registry import async_load_registries, entity_registry


class Thermometer(Entity):
    domain = "sensor"

    def __init__(self, unique_id: str, name: str | None = "Temperature") -> None:
        self._attr_unique_id = unique_id
        self._attr_name = name
        self._attr_unit_of_measurement = "°C"
        self._attr_icon = "mdi:thermometer"
        self._attr_extra_state_attributes = {"probe": "rear"}
        self._attr_device_info = DeviceInfo(
            identifiers={("sim", "lobby_1")}, name="Lobby 1", manufacturer="Acme"
        )

    def read(self, value: float | None, available: bool = True) -> None:
        self._attr_state = value
        self._attr_available = available
        self.async_write_state()


class Slot(Entity):
    """A slot whose state comes from a property, as an integration might write it."""

    domain = "slot"

    def __init__(self, code: str, stock: int) -> None:
        self._attr_unique_id = f"lobby_1-{code}"
        self.code = code
        self.stock = stock

    @property
    def name(self) -> str:
        return f"Slot {self.code}"

    @property
    def state(self) -> int:
        return self.stock

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        return {"product": "Cola", "price": 1.5, "capacity": 10}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    yield hub
    await hub.async_stop()


async def test_state_and_attributes(hub: Hub) -> None:
    [thermometer] = await async_add_entities(hub, "sim", [Thermometer("lobby_1-temp")])
    thermometer.read(6.5)

    state = hub.states.get("sensor.temperature")
    assert state is not None
    assert state.state == "6.5"
    device_id = thermometer.registry_entry.device_id if thermometer.registry_entry else None
    assert device_id is not None
    assert dict(state.attributes) == {
        "probe": "rear",
        "friendly_name": "Temperature",
        "unit_of_measurement": "°C",
        "icon": "mdi:thermometer",
        "device_id": device_id,
    }
    assert state.name == "Temperature"


async def test_none_state_is_unknown(hub: Hub) -> None:
    [thermometer] = await async_add_entities(hub, "sim", [Thermometer("lobby_1-temp")])

    state = hub.states.get(thermometer.entity_id)
    assert state is not None
    assert state.state == "unknown"
    assert state.attributes["probe"] == "rear"


async def test_unavailable_keeps_name_and_unit_but_not_extra_attributes(hub: Hub) -> None:
    [thermometer] = await async_add_entities(hub, "sim", [Thermometer("lobby_1-temp")])
    thermometer.read(6.5, available=False)

    state = hub.states.get("sensor.temperature")
    assert state is not None
    assert state.state == "unavailable"
    assert "probe" not in state.attributes
    assert state.attributes["friendly_name"] == "Temperature"
    assert state.attributes["unit_of_measurement"] == "°C"


async def test_registry_overrides_win_over_entity_values(hub: Hub) -> None:
    [thermometer] = await async_add_entities(hub, "sim", [Thermometer("lobby_1-temp")])
    entity_registry(hub).async_update_entity(
        "sensor.temperature", name="Fridge temperature", icon="mdi:fridge"
    )
    thermometer.read(4)

    state = hub.states.get("sensor.temperature")
    assert state is not None
    assert state.state == "4"
    assert state.attributes["friendly_name"] == "Fridge temperature"
    assert state.attributes["icon"] == "mdi:fridge"


async def test_entity_without_name_has_no_friendly_name(hub: Hub) -> None:
    [thermometer] = await async_add_entities(hub, "sim", [Thermometer("probe-7", name=None)])

    assert thermometer.entity_id == "sensor.probe_7"
    state = hub.states.get("sensor.probe_7")
    assert state is not None
    assert "friendly_name" not in state.attributes
    assert state.name == "probe 7"


async def test_properties_drive_the_state(hub: Hub) -> None:
    [slot] = await async_add_entities(hub, "sim", [Slot("A1", 7)])
    assert isinstance(slot, Slot)
    slot.stock = 6
    context = Context(user_id="driver")
    slot.async_write_state(context)

    state = hub.states.get("slot.slot_a1")
    assert state is not None
    assert state.state == "6"
    assert state.context is context
    assert dict(state.attributes) == {
        "product": "Cola",
        "price": 1.5,
        "capacity": 10,
        "friendly_name": "Slot A1",
    }


async def test_writing_before_adding_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="add it with async_add_entities first"):
        Thermometer("t").async_write_state()


async def test_default_properties() -> None:
    class Bare(Entity):
        domain = "machine"

    bare = Bare()
    assert (bare.unique_id, bare.name, bare.state, bare.extra_state_attributes) == (
        None,
        None,
        None,
        None,
    )
    assert bare.available is True
    assert (bare.device_info, bare.unit_of_measurement, bare.icon) == (None, None, None)
    assert bare.enabled is True
