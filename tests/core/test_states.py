"""StateMachine and State: change semantics, immutability, validation."""

from __future__ import annotations

import pytest

from vendhub.const import EVENT_STATE_CHANGED
from vendhub.core.context import Context
from vendhub.core.errors import InvalidEntityId, InvalidStateError
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.core.states import State, valid_entity_id


def _collect(hub: Hub) -> list[Event]:
    events: list[Event] = []
    hub.bus.async_listen(EVENT_STATE_CHANGED, events.append)
    return events


async def test_first_set_creates_state_and_fires_event(hub: Hub) -> None:
    events = _collect(hub)
    context = Context(user_id="operator")
    state = hub.states.async_set("slot.lobby_1_a1", 8, {"price": 150}, context=context)

    assert state is not None
    assert state.state == "8"
    assert state.attributes == {"price": 150}
    assert state.last_changed == state.last_updated
    assert state.context is context
    assert len(events) == 1
    assert events[0].data["old_state"] is None
    assert events[0].data["new_state"] is state
    assert events[0].context is context
    assert hub.states.get("slot.lobby_1_a1") is state


async def test_same_state_and_attributes_fire_nothing(hub: Hub) -> None:
    events = _collect(hub)
    hub.states.async_set("slot.lobby_1_a1", "8", {"price": 150})
    assert hub.states.async_set("slot.lobby_1_a1", "8", {"price": 150}) is None
    assert len(events) == 1


async def test_attribute_change_keeps_last_changed(hub: Hub) -> None:
    events = _collect(hub)
    first = hub.states.async_set("slot.lobby_1_a1", "8", {"price": 150})
    second = hub.states.async_set("slot.lobby_1_a1", "8", {"price": 170})
    assert first is not None and second is not None
    assert second.last_changed == first.last_changed
    assert second.last_updated > first.last_updated
    assert len(events) == 2
    assert events[1].data["old_state"] is first


async def test_state_change_moves_last_changed(hub: Hub) -> None:
    first = hub.states.async_set("slot.lobby_1_a1", "8")
    second = hub.states.async_set("slot.lobby_1_a1", "7")
    assert first is not None and second is not None
    assert second.last_changed > first.last_changed
    assert second.last_changed == second.last_updated


async def test_force_update_fires_even_without_change(hub: Hub) -> None:
    events = _collect(hub)
    first = hub.states.async_set("sensor.lobby_1_temperature", "4.0")
    forced = hub.states.async_set("sensor.lobby_1_temperature", "4.0", force_update=True)
    assert forced is not None and first is not None
    assert len(events) == 2
    assert forced.last_changed == first.last_changed


async def test_state_and_attributes_are_immutable(hub: Hub) -> None:
    attributes = {"price": 150}
    state = hub.states.async_set("slot.lobby_1_a1", "8", attributes)
    assert state is not None
    attributes["price"] = 1  # the caller's dict is copied, not kept
    assert state.attributes["price"] == 150
    with pytest.raises(AttributeError):
        state.state = "9"  # type: ignore[misc]
    with pytest.raises(TypeError):
        state.attributes["price"] = 1  # type: ignore[index]


async def test_remove_fires_event_with_no_new_state(hub: Hub) -> None:
    events = _collect(hub)
    hub.states.async_set("binary_sensor.lobby_1_door", "off")
    assert hub.states.async_remove("binary_sensor.lobby_1_door") is True
    assert hub.states.async_remove("binary_sensor.lobby_1_door") is False
    assert events[-1].data["new_state"] is None
    assert hub.states.get("binary_sensor.lobby_1_door") is None


async def test_invalid_entity_id_and_long_state_are_refused(hub: Hub) -> None:
    with pytest.raises(InvalidEntityId, match=r"Sensor\.X"):
        hub.states.async_set("Sensor.X", "1")
    with pytest.raises(InvalidStateError, match="255"):
        hub.states.async_set("sensor.long", "x" * 256)
    assert len(hub.states) == 0


@pytest.mark.parametrize(
    ("entity_id", "valid"),
    [
        ("sensor.lobby_1_temperature", True),
        ("slot.a1", True),
        ("sensor", False),
        ("sensor.", False),
        (".x", False),
        ("sensor.bad__double", False),
        ("sensor._leading", False),
        ("sensor.trailing_", False),
        ("sensor.UPPER", False),
        ("sensor.with space", False),
    ],
)
def test_valid_entity_id(entity_id: str, valid: bool) -> None:
    assert valid_entity_id(entity_id) is valid


async def test_queries_by_domain(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "1")
    hub.states.async_set("slot.m_a2", "2")
    hub.states.async_set("sensor.m_temperature", "4")
    assert sorted(hub.states.async_entity_ids("slot")) == ["slot.m_a1", "slot.m_a2"]
    assert [s.entity_id for s in hub.states.async_all(["sensor"])] == ["sensor.m_temperature"]
    assert hub.states.is_state("slot.m_a2", "2")
    assert not hub.states.is_state("slot.missing", "2")


def test_state_equality_and_dict() -> None:
    context = Context()
    one = State("sensor.x", "1", {"unit": "°C"}, context=context)
    two = State(
        "sensor.x", "1", {"unit": "°C"}, one.last_changed, one.last_updated, context=context
    )
    assert one == two
    assert one.as_dict()["attributes"] == {"unit": "°C"}
    assert one.as_dict()["context"]["id"] == context.id
