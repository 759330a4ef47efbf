"""Alarms: raise, repeat, thresholds, acknowledge, clear, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub_integrations.alarm import vendhub_setup
from vendhub_integrations.alarm.alarms import MAX_MESSAGE_CHARS


async def start(tmp_path: Path) -> Hub:
    hub = Hub(tmp_path)
    await vendhub_setup(hub=hub)
    return hub


def record(hub: Hub, *types: str) -> list[Event]:
    events: list[Event] = []
    for event_type in types:
        hub.bus.async_listen(event_type, events.append)
    return events


async def test_raise_repeat_acknowledge_clear(tmp_path: Path) -> None:
    hub = await start(tmp_path)
    events = record(hub, "alarm_raised", "alarm_updated", "alarm_acknowledged", "alarm_cleared")
    raised = await hub.services.async_call(
        "alarm",
        "raise",
        {"code": "fridge_warm", "message": "Fridge at 9.2 °C", "machine_id": "gym_drinks"},
    )
    again = await hub.services.async_call(
        "alarm",
        "raise",
        {
            "code": "fridge_warm",
            "message": "Fridge at 10.1 °C",
            "machine_id": "gym_drinks",
            "severity": "critical",
        },
    )
    assert again["id"] == raised["id"]
    assert again["count"] == 2
    assert again["severity"] == "critical"
    state = hub.states.get("alarm.gym_drinks_fridge_warm")
    assert state is not None and state.state == "raised"
    assert state.attributes["message"] == "Fridge at 10.1 °C"

    acknowledged = await hub.services.async_call(
        "alarm",
        "acknowledge",
        {"machine_id": "gym_drinks", "code": "fridge_warm"},
        context=Context(user_id="operator_anna"),
    )
    assert acknowledged["status"] == "acknowledged"
    assert acknowledged["acknowledged_by"] == "operator_anna"
    assert hub.states.get("alarm.gym_drinks_fridge_warm").state == "acknowledged"

    cleared = await hub.services.async_call("alarm", "clear", {"alarm_id": raised["id"]})
    assert cleared["status"] == "cleared"
    assert hub.states.get("alarm.gym_drinks_fridge_warm") is None
    assert [e.event_type for e in events] == [
        "alarm_raised",
        "alarm_updated",
        "alarm_acknowledged",
        "alarm_cleared",
    ]
    listed = await hub.services.async_call("alarm", "list", {"include_cleared": True})
    assert listed["active"] == []
    assert [a["id"] for a in listed["cleared"]] == [raised["id"]]
    await hub.async_stop()


async def test_threshold_raises_only_after_n_reports(tmp_path: Path) -> None:
    hub = await start(tmp_path)
    data = {
        "code": "vend_failures",
        "message": "Vends failing",
        "machine_id": "lobby_1",
        "threshold": {"count": 3, "within": "10min"},
    }
    assert await hub.services.async_call("alarm", "raise", data) is None
    assert await hub.services.async_call("alarm", "raise", data) is None
    alarm = await hub.services.async_call("alarm", "raise", data)
    assert alarm is not None and alarm["status"] == "raised"
    await hub.async_stop()


async def test_unknown_alarm_and_bad_input_are_clear_errors(tmp_path: Path) -> None:
    hub = await start(tmp_path)
    with pytest.raises(InvalidServiceData, match="no active alarm"):
        await hub.services.async_call("alarm", "clear", {"alarm_id": "nope"})
    with pytest.raises(InvalidServiceData, match="name the alarm"):
        await hub.services.async_call("alarm", "acknowledge", {"machine_id": "lobby_1"})
    with pytest.raises(InvalidServiceData, match="severity"):
        await hub.services.async_call(
            "alarm", "raise", {"code": "x", "message": "y", "severity": "apocalyptic"}
        )
    await hub.async_stop()


async def test_active_alarms_survive_a_restart(tmp_path: Path) -> None:
    hub = await start(tmp_path)
    await hub.services.async_call(
        "alarm", "raise", {"code": "door_open", "message": "Door open at night", "machine_id": "m1"}
    )
    await hub.async_stop()

    hub = await start(tmp_path)
    listed = await hub.services.async_call("alarm", "list", {})
    assert [(a["code"], a["machine_id"]) for a in listed["active"]] == [("door_open", "m1")]
    assert hub.states.get("alarm.m1_door_open").state == "raised"
    await hub.async_stop()


async def test_alarms_whose_names_make_the_same_entity_id_each_get_their_own(
    tmp_path: Path,
) -> None:
    hub = await start(tmp_path)
    first = await hub.services.async_call(
        "alarm", "raise", {"code": "b2_x", "message": "first", "machine_id": "lobby_1"}
    )
    second = await hub.services.async_call(
        "alarm", "raise", {"code": "x", "message": "second", "machine_id": "lobby_1_b2"}
    )
    assert (first["entity_id"], second["entity_id"]) == (
        "alarm.lobby_1_b2_x",
        "alarm.lobby_1_b2_x_2",
    )
    assert hub.states.get("alarm.lobby_1_b2_x").attributes["message"] == "first"
    assert hub.states.get("alarm.lobby_1_b2_x_2").attributes["message"] == "second"

    # Clearing one leaves the other's state; both keep theirs across a restart.
    await hub.services.async_call("alarm", "clear", {"alarm_id": second["id"]})
    assert hub.states.get("alarm.lobby_1_b2_x").attributes["message"] == "first"
    third = await hub.services.async_call(
        "alarm", "raise", {"code": "x", "message": "third", "machine_id": "lobby_1_b2"}
    )
    await hub.async_stop()
    hub = await start(tmp_path)
    assert hub.states.get("alarm.lobby_1_b2_x").attributes["alarm_id"] == first["id"]
    assert hub.states.get(third["entity_id"]).attributes["alarm_id"] == third["id"]
    assert third["entity_id"] != first["entity_id"]
    await hub.async_stop()


async def test_a_huge_alarm_message_is_cut(tmp_path: Path) -> None:
    hub = await start(tmp_path)
    alarm = await hub.services.async_call(
        "alarm", "raise", {"code": "x", "message": "y" * 900_000, "machine_id": "lobby_1"}
    )
    assert len(alarm["message"]) == MAX_MESSAGE_CHARS and alarm["message"].endswith("…")
    assert hub.states.get("alarm.lobby_1_x").attributes["message"] == alarm["message"]
    await hub.async_stop()


async def test_a_second_acknowledge_keeps_the_first_and_a_worse_repeat_raises_it_again(
    tmp_path: Path,
) -> None:
    hub = await start(tmp_path)
    target = {"machine_id": "gym_drinks", "code": "fridge_warm"}
    await hub.services.async_call(
        "alarm", "raise", {**target, "message": "Fridge at 9 °C", "severity": "info"}
    )
    first = await hub.services.async_call(
        "alarm", "acknowledge", target, context=Context(user_id="tech_tom")
    )
    again = await hub.services.async_call(
        "alarm", "acknowledge", target, context=Context(user_id="operator_anna")
    )
    assert (again["acknowledged_by"], again["acknowledged_at"]) == (
        "tech_tom",
        first["acknowledged_at"],
    )

    # The same severity again: still acknowledged. Worse: raised again, for attention.
    same = await hub.services.async_call(
        "alarm", "raise", {**target, "message": "Fridge at 9.5 °C", "severity": "info"}
    )
    assert same["status"] == "acknowledged"
    worse = await hub.services.async_call(
        "alarm", "raise", {**target, "message": "Fridge at 14 °C", "severity": "critical"}
    )
    assert (worse["status"], worse["acknowledged_by"], worse["severity"]) == (
        "raised",
        None,
        "critical",
    )
    assert hub.states.get("alarm.gym_drinks_fridge_warm").state == "raised"
    await hub.async_stop()
