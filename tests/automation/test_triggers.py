"""Trigger platforms: each fires when it should and stays quiet when it should not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import voluptuous as vol

from vendhub.automation.triggers import (
    EVENT_MQTT_MESSAGE_RECEIVED,
    TRIGGER_PLATFORMS,
    TRIGGER_SCHEMA,
    TriggerClock,
    TriggerPlatform,
    async_attach_triggers,
    register_trigger_platform,
    set_trigger_clock,
    topic_matches,
)
from vendhub.automation.triggers.clock import TimePattern, next_daily_time, next_pattern_time
from vendhub.automation.triggers.time_pattern import pattern_from_config
from vendhub.const import (
    EVENT_MACHINE_OFFLINE,
    EVENT_MACHINE_ONLINE,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
    EVENT_VEND_STARTED,
)
from vendhub.core.context import Context
from vendhub.core.events import Event
from vendhub.core.hub import CoreConfig, Hub
from vendhub.util.dt import UTC

BERLIN = ZoneInfo("Europe/Berlin")
SHORT = 0.05  # seconds: the `for:` periods of these tests


class Calls:
    """Records what the trigger action was called with."""

    def __init__(self) -> None:
        self.items: list[tuple[dict[str, Any], Context | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, trigger: dict[str, Any], context: Context | None) -> None:
        self.items.append((trigger, context))
        self._changed.set()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def triggers(self) -> list[dict[str, Any]]:
        return [trigger for trigger, _ in self.items]

    @property
    def last(self) -> dict[str, Any]:
        return self.items[-1][0]

    async def wait_for(self, count: int, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()


async def attach(
    hub: Hub, *configs: dict[str, Any], variables: dict[str, Any] | None = None
) -> tuple[Calls, Any]:
    calls = Calls()
    unsubscribe = await async_attach_triggers(
        hub, list(configs), calls, name="Test automation", variables=variables
    )
    return calls, unsubscribe


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
async def berlin_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    instance = Hub(tmp_path, CoreConfig(time_zone="Europe/Berlin"))
    yield instance
    await instance.async_stop()


# ---- state ------------------------------------------------------------------------------------


async def test_state_fires_on_a_state_change_with_states_and_context(hub: Hub) -> None:
    first = hub.states.async_set("sensor.door", "closed")
    calls, _ = await attach(hub, {"platform": "state", "entity_id": "sensor.door"})
    cause = Context(user_id="driver")
    second = hub.states.async_set("sensor.door", "open", context=cause)

    assert len(calls) == 1
    trigger, context = calls.items[0]
    assert trigger["platform"] == "state"
    assert trigger["id"] == "0"
    assert trigger["idx"] == "0"
    assert trigger["entity_id"] == "sensor.door"
    assert trigger["from_state"] is first
    assert trigger["to_state"] is second
    assert trigger["for"] is None
    assert trigger["description"] == "state of sensor.door"
    assert context is cause


async def test_state_ignores_attribute_only_changes_by_default(hub: Hub) -> None:
    hub.states.async_set("slot.a1", "5", {"price": 150})
    calls, _ = await attach(hub, {"platform": "state", "entity_id": "slot.a1", "to": None})
    hub.states.async_set("slot.a1", "5", {"price": 180})
    assert len(calls) == 0
    hub.states.async_set("slot.a1", "4", {"price": 180})
    assert [trigger["to_state"].state for trigger in calls.triggers] == ["4"]


async def test_state_from_to_and_lists(hub: Hub) -> None:
    hub.states.async_set("machine.lobby", "idle")
    calls, _ = await attach(
        hub,
        {
            "platform": "state",
            "entity_id": "machine.lobby",
            "from": ["idle", "service"],
            "to": "vending",
        },
    )
    hub.states.async_set("machine.lobby", "error")  # to does not match
    hub.states.async_set("machine.lobby", "vending")  # from 'error' does not match
    hub.states.async_set("machine.lobby", "service")
    hub.states.async_set("machine.lobby", "vending")  # service -> vending: fires
    assert [(t["from_state"].state, t["to_state"].state) for t in calls.triggers] == [
        ("service", "vending")
    ]


async def test_state_not_from_and_not_to(hub: Hub) -> None:
    hub.states.async_set("machine.lobby", "online")
    calls, _ = await attach(
        hub,
        {
            "platform": "state",
            "entity_id": "machine.lobby",
            "not_from": "unavailable",
            "not_to": ["unavailable", "unknown"],
        },
    )
    hub.states.async_set("machine.lobby", "unavailable")  # not_to
    hub.states.async_set("machine.lobby", "online")  # not_from
    hub.states.async_set("machine.lobby", "service")  # fires
    hub.states.async_set("machine.lobby", "unknown")  # not_to
    assert [t["to_state"].state for t in calls.triggers] == ["service"]


async def test_state_numbers_in_yaml_match_state_strings(hub: Hub) -> None:
    hub.states.async_set("slot.a1", "3")
    calls, _ = await attach(hub, {"platform": "state", "entity_id": "slot.a1", "to": 0})
    hub.states.async_set("slot.a1", "1")
    hub.states.async_set("slot.a1", "0")
    assert [t["to_state"].state for t in calls.triggers] == ["0"]


async def test_state_attribute_changes_fire_with_attribute(hub: Hub) -> None:
    hub.states.async_set("slot.a1", "5", {"price": 150, "product": "cola"})
    calls, _ = await attach(
        hub, {"platform": "state", "entity_id": "slot.a1", "attribute": "price", "to": 200}
    )
    hub.states.async_set("slot.a1", "4", {"price": 150, "product": "cola"})  # price unchanged
    hub.states.async_set("slot.a1", "4", {"price": 180, "product": "cola"})  # not 200
    hub.states.async_set("slot.a1", "4", {"price": 200, "product": "cola"})
    assert len(calls) == 1
    assert calls.last["attribute"] == "price"
    assert calls.last["to_state"].attributes["price"] == 200


async def test_state_several_entities_and_a_new_entity(hub: Hub) -> None:
    calls, _ = await attach(
        hub, {"platform": "state", "entity_id": ["sensor.one", "sensor.two"], "id": "pair"}
    )
    hub.states.async_set("sensor.one", "a")  # created: no from constraint, fires
    hub.states.async_set("sensor.two", "b")
    hub.states.async_set("sensor.three", "c")
    assert [(t["entity_id"], t["from_state"]) for t in calls.triggers] == [
        ("sensor.one", None),
        ("sensor.two", None),
    ]
    assert {t["id"] for t in calls.triggers} == {"pair"}


async def test_state_removal_does_not_fire(hub: Hub) -> None:
    hub.states.async_set("sensor.door", "open")
    calls, _ = await attach(hub, {"platform": "state", "entity_id": "sensor.door"})
    hub.states.async_remove("sensor.door")
    assert len(calls) == 0


async def test_state_for_fires_after_the_period(hub: Hub) -> None:
    hub.states.async_set("binary_sensor.door", "off")
    calls, _ = await attach(
        hub,
        {"platform": "state", "entity_id": "binary_sensor.door", "to": "on", "for": SHORT},
    )
    cause = Context()
    hub.states.async_set("binary_sensor.door", "on", context=cause)
    hub.states.async_set("binary_sensor.door", "on", {"battery": 80})  # still on: keeps waiting
    await asyncio.sleep(SHORT / 2)
    assert len(calls) == 0
    await calls.wait_for(1)
    trigger, context = calls.items[0]
    assert trigger["for"] == timedelta(seconds=SHORT)
    assert trigger["to_state"].state == "on"
    assert context is cause


async def test_state_for_is_cancelled_when_the_state_changes_back(hub: Hub) -> None:
    hub.states.async_set("binary_sensor.door", "off")
    calls, _ = await attach(
        hub,
        {"platform": "state", "entity_id": "binary_sensor.door", "to": "on", "for": SHORT},
    )
    hub.states.async_set("binary_sensor.door", "on")
    await asyncio.sleep(SHORT / 2)
    hub.states.async_set("binary_sensor.door", "off")
    await asyncio.sleep(SHORT * 2)
    assert len(calls) == 0


async def test_state_for_without_to_restarts_on_each_new_value(hub: Hub) -> None:
    hub.states.async_set("sensor.mode", "a")
    calls, _ = await attach(hub, {"platform": "state", "entity_id": "sensor.mode", "for": SHORT})
    hub.states.async_set("sensor.mode", "b")
    await asyncio.sleep(SHORT / 2)
    hub.states.async_set("sensor.mode", "c")  # a new value: the wait starts again for 'c'
    await calls.wait_for(1)
    await asyncio.sleep(SHORT)
    assert [t["to_state"].state for t in calls.triggers] == ["c"]


async def test_state_for_as_template(hub: Hub) -> None:
    hub.states.async_set("number.door_delay", "0.05")
    hub.states.async_set("binary_sensor.door", "off")
    calls, _ = await attach(
        hub,
        {
            "platform": "state",
            "entity_id": "binary_sensor.door",
            "to": "on",
            "for": "{{ states('number.door_delay') }}",
        },
    )
    hub.states.async_set("binary_sensor.door", "on")
    assert len(calls) == 0
    await calls.wait_for(1)
    assert calls.last["for"] == timedelta(seconds=0.05)


# ---- numeric_state --------------------------------------------------------------------------


async def test_numeric_state_fires_when_crossing_and_not_while_above(hub: Hub) -> None:
    hub.states.async_set("sensor.fridge", "5.0")
    calls, _ = await attach(
        hub, {"platform": "numeric_state", "entity_id": "sensor.fridge", "above": 8}
    )
    for value in ("7.5", "8.0", "8.5", "9.0", "10"):
        hub.states.async_set("sensor.fridge", value)
    assert [t["to_state"].state for t in calls.triggers] == ["8.5"]
    assert calls.last["from_state"].state == "8.0"
    assert calls.last["above"] == 8.0
    assert calls.last["below"] is None
    hub.states.async_set("sensor.fridge", "6")  # leaves the range: armed again
    hub.states.async_set("sensor.fridge", "9")
    assert [t["to_state"].state for t in calls.triggers] == ["8.5", "9"]


async def test_numeric_state_already_in_range_fires_only_after_leaving(hub: Hub) -> None:
    hub.states.async_set("slot.a1", "2")
    calls, _ = await attach(hub, {"platform": "numeric_state", "entity_id": "slot.a1", "below": 3})
    hub.states.async_set("slot.a1", "1")
    assert len(calls) == 0
    hub.states.async_set("slot.a1", "10")
    hub.states.async_set("slot.a1", "2")
    assert [t["to_state"].state for t in calls.triggers] == ["2"]


async def test_numeric_state_range_attribute_and_non_numeric(hub: Hub) -> None:
    hub.states.async_set("sensor.fridge", "ok", {"temperature": 4})
    calls, _ = await attach(
        hub,
        {
            "platform": "numeric_state",
            "entity_id": "sensor.fridge",
            "attribute": "temperature",
            "above": 8,
            "below": 20,
        },
    )
    hub.states.async_set("sensor.fridge", "ok", {"temperature": 25})  # above 'below'
    hub.states.async_set("sensor.fridge", "ok", {"temperature": 12})  # enters
    hub.states.async_set("sensor.fridge", "ok", {"temperature": "broken"})  # not a number: arms
    hub.states.async_set("sensor.fridge", "ok", {"temperature": 13})  # enters again
    assert [t["to_state"].attributes["temperature"] for t in calls.triggers] == [12, 13]


async def test_numeric_state_limit_from_an_entity(hub: Hub) -> None:
    hub.states.async_set("number.fridge_max", "8")
    hub.states.async_set("sensor.fridge", "5")
    calls, _ = await attach(
        hub,
        {"platform": "numeric_state", "entity_id": "sensor.fridge", "above": "number.fridge_max"},
    )
    hub.states.async_set("sensor.fridge", "7")
    assert len(calls) == 0
    hub.states.async_set("number.fridge_max", "6")  # the limit moved; the next change crosses
    hub.states.async_set("sensor.fridge", "7.5")
    assert [t["to_state"].state for t in calls.triggers] == ["7.5"]


async def test_numeric_state_value_template_with_variables(hub: Hub) -> None:
    hub.states.async_set("sensor.fridge", "40")
    calls, _ = await attach(
        hub,
        {
            "platform": "numeric_state",
            "entity_id": "sensor.fridge",
            "value_template": "{{ (state.state | float - 32) / 1.8 * factor }}",
            "above": 8,
        },
        variables={"factor": 1},
    )
    hub.states.async_set("sensor.fridge", "45")  # 7.2 °C
    hub.states.async_set("sensor.fridge", "50")  # 10 °C
    assert [t["to_state"].state for t in calls.triggers] == ["50"]


async def test_numeric_state_for_fires_and_is_cancelled(hub: Hub) -> None:
    hub.states.async_set("sensor.fridge", "5")
    calls, _ = await attach(
        hub,
        {"platform": "numeric_state", "entity_id": "sensor.fridge", "above": 8, "for": SHORT},
    )
    hub.states.async_set("sensor.fridge", "9")
    await asyncio.sleep(SHORT / 2)
    hub.states.async_set("sensor.fridge", "7")  # back below: cancelled
    await asyncio.sleep(SHORT * 1.5)
    assert len(calls) == 0
    hub.states.async_set("sensor.fridge", "9")
    hub.states.async_set("sensor.fridge", "10")  # stays above: the wait goes on
    await calls.wait_for(1)
    assert calls.last["to_state"].state == "9"
    assert calls.last["for"] == timedelta(seconds=SHORT)


# ---- event ------------------------------------------------------------------------------------


async def test_event_types_and_data_subset(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {
            "platform": "event",
            "event_type": ["door_opened", "door_forced"],
            "event_data": {"machine_id": "lobby_1", "door": {"side": "front"}},
        },
    )
    hub.bus.async_fire("door_opened", {"machine_id": "lobby_2", "door": {"side": "front"}})
    hub.bus.async_fire("door_opened", {"machine_id": "lobby_1", "door": {"side": "back"}})
    hub.bus.async_fire("door_closed", {"machine_id": "lobby_1", "door": {"side": "front"}})
    hub.bus.async_fire(
        "door_forced", {"machine_id": "lobby_1", "door": {"side": "front", "lock": "x"}}
    )
    assert len(calls) == 1
    event = calls.last["event"]
    assert isinstance(event, Event)
    assert event.event_type == "door_forced"
    assert calls.last["description"] == "event 'door_forced'"
    assert calls.items[0][1] is event.context


async def test_event_data_numbers_match_text_and_templates_render(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {"platform": "event", "event_type": "vend_ack", "event_data": {"slot": 11, "m": "{{ m }}"}},
        variables={"m": "lobby_1"},
    )
    hub.bus.async_fire("vend_ack", {"slot": "11", "m": "lobby_2"})
    hub.bus.async_fire("vend_ack", {"slot": "11", "m": "lobby_1"})
    assert [t["event"].data["m"] for t in calls.triggers] == ["lobby_1"]


async def test_event_context_user_id(hub: Hub) -> None:
    calls, _ = await attach(
        hub, {"platform": "event", "event_type": "price_set", "context": {"user_id": "anna"}}
    )
    hub.bus.async_fire("price_set", context=Context(user_id="bob"))
    hub.bus.async_fire("price_set")
    hub.bus.async_fire("price_set", context=Context(user_id="anna"))
    assert [context.user_id for _, context in calls.items if context] == ["anna"]


# ---- time -------------------------------------------------------------------------------------


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


async def test_time_fires_at_the_local_time(berlin_hub: Hub) -> None:
    # 07:59:59.95 Berlin time (06:59:59.95 UTC): "08:00" is 50 ms away.
    set_trigger_clock(berlin_hub, TriggerClock.starting_at(local("2024-06-03T07:59:59.950")))
    calls, _ = await attach(berlin_hub, {"platform": "time", "at": ["08:00", "09:00:00"]})
    await calls.wait_for(1)
    await asyncio.sleep(0.05)
    trigger, context = calls.items[0]
    assert len(calls) == 1  # 09:00 is an hour away
    assert context is None
    assert trigger["at"] == "08:00:00"
    assert trigger["now"].tzinfo is not None
    assert trigger["now"].astimezone(BERLIN).strftime("%H:%M:%S") == "08:00:00"
    assert trigger["now"].utcoffset() == timedelta(hours=2)
    assert trigger["description"] == "time 08:00:00"


async def test_time_does_not_fire_for_a_past_time(berlin_hub: Hub) -> None:
    set_trigger_clock(berlin_hub, TriggerClock.starting_at(local("2024-06-03T08:00:00.010")))
    calls, _ = await attach(berlin_hub, {"platform": "time", "at": "08:00"})
    await asyncio.sleep(0.1)
    assert len(calls) == 0


def test_next_daily_time_once_a_day_across_daylight_saving() -> None:
    at = time(2, 30)
    # Spring forward (2024-03-31, 02:00 -> 03:00): 02:30 does not exist; due 03:30 CEST.
    due = next_daily_time(local("2024-03-31T01:00"), at, BERLIN)
    assert due == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
    assert due.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    # The day after, back to 02:30.
    assert next_daily_time(due, at, BERLIN) == datetime(2024, 4, 1, 0, 30, tzinfo=UTC)
    # Fall back (2024-10-27, 03:00 -> 02:00): 02:30 happens twice; only the first counts.
    first = next_daily_time(local("2024-10-27T01:00"), at, BERLIN)
    assert first == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert next_daily_time(first, at, BERLIN) == datetime(2024, 10, 28, 1, 30, tzinfo=UTC)
    # Just after 08:00 the next 08:00 is tomorrow's.
    assert next_daily_time(local("2024-06-03T08:00:00.5"), time(8), BERLIN) == local(
        "2024-06-04T08:00"
    )


# ---- time_pattern -----------------------------------------------------------------------------


async def test_time_pattern_fires_on_matching_seconds(berlin_hub: Hub) -> None:
    set_trigger_clock(berlin_hub, TriggerClock.starting_at(local("2024-06-03T10:14:59.950")))
    calls, _ = await attach(berlin_hub, {"platform": "time_pattern", "minutes": "/15"})
    await calls.wait_for(1)
    assert calls.last["now"].strftime("%H:%M:%S") == "10:15:00"
    assert calls.last["description"] == "time pattern hours=* minutes=/15 seconds=0"
    assert calls.items[0][1] is None


async def test_time_pattern_does_not_fire_off_pattern(berlin_hub: Hub) -> None:
    set_trigger_clock(berlin_hub, TriggerClock.starting_at(local("2024-06-03T10:15:59.950")))
    calls, _ = await attach(berlin_hub, {"platform": "time_pattern", "minutes": "/15"})
    await asyncio.sleep(0.15)  # 10:16:00 passes: not a quarter hour
    assert len(calls) == 0


def test_time_pattern_defaults_and_ranges() -> None:
    config = TRIGGER_SCHEMA({"platform": "time_pattern", "hours": 6})
    assert pattern_from_config(config) == TimePattern((6,), (0,), (0,))
    config = TRIGGER_SCHEMA({"platform": "time_pattern", "seconds": "/20"})
    pattern = pattern_from_config(config)
    assert pattern.hours == tuple(range(24))
    assert pattern.minutes == tuple(range(60))
    assert pattern.seconds == (0, 20, 40)
    for bad, message in (
        ({"hours": 24}, "hours must be from 0 to 23, got 24"),
        ({"minutes": "/0"}, "the step of '/n' for minutes must be from 1 to 59"),
        ({"seconds": "/x"}, "expected a number from 0 to 59"),
        ({}, "needs at least one of hours, minutes, seconds"),
    ):
        with pytest.raises(vol.Invalid) as error:
            TRIGGER_SCHEMA({"platform": "time_pattern", **bad})
        assert message in str(error.value)


def test_next_pattern_time_across_daylight_saving() -> None:
    every_five_minutes = TimePattern(tuple(range(24)), tuple(range(0, 60, 5)), (0,))
    # Fall back: from 02:58 CEST the next five-minute mark is 02:00 CET, two real minutes on.
    due = next_pattern_time(local("2024-10-27T02:58"), every_five_minutes, BERLIN)
    assert due == datetime(2024, 10, 27, 1, 0, tzinfo=UTC)
    # Spring forward: 02:xx does not exist, so "hours: 2" skips that day.
    two_oclock = TimePattern((2,), (0,), (0,))
    due = next_pattern_time(local("2024-03-31T01:59"), two_oclock, BERLIN)
    assert due == local("2024-04-01T02:00")
    # An ordinary step: strictly after, whole seconds.
    due = next_pattern_time(local("2024-06-03T10:15:00"), every_five_minutes, BERLIN)
    assert due == local("2024-06-03T10:20:00")


# ---- template ---------------------------------------------------------------------------------


async def test_template_fires_on_false_to_true_once(hub: Hub) -> None:
    hub.states.async_set("slot.a1", "5")
    calls, _ = await attach(
        hub,
        {"platform": "template", "value_template": "{{ states('slot.a1') | int < limit }}"},
        variables={"limit": 3},
    )
    hub.states.async_set("slot.a1", "4")
    cause = Context()
    hub.states.async_set("slot.a1", "2", context=cause)  # false -> true: fires
    hub.states.async_set("slot.a1", "1")  # still true: quiet
    assert len(calls) == 1
    trigger, context = calls.items[0]
    assert trigger["entity_id"] == "slot.a1"
    assert trigger["to_state"].state == "2"
    assert trigger["value"] is True
    assert context is cause
    hub.states.async_set("slot.a1", "9")
    hub.states.async_set("slot.a1", "0")
    assert len(calls) == 2


async def test_template_true_when_attached_waits_for_false(hub: Hub) -> None:
    hub.states.async_set("binary_sensor.jam", "on")
    calls, _ = await attach(
        hub, {"platform": "template", "value_template": "{{ is_state('binary_sensor.jam', 'on') }}"}
    )
    hub.states.async_set("binary_sensor.jam", "on", {"code": 4})
    assert len(calls) == 0
    hub.states.async_set("binary_sensor.jam", "off")
    hub.states.async_set("binary_sensor.jam", "on")
    assert len(calls) == 1


async def test_template_for_fires_and_is_cancelled(hub: Hub) -> None:
    hub.states.async_set("sensor.fridge", "5")
    calls, _ = await attach(
        hub,
        {
            "platform": "template",
            "value_template": "{{ states('sensor.fridge') | float > 8 }}",
            "for": {"seconds": SHORT},
        },
    )
    hub.states.async_set("sensor.fridge", "9")
    await asyncio.sleep(SHORT / 2)
    hub.states.async_set("sensor.fridge", "7")
    await asyncio.sleep(SHORT * 1.5)
    assert len(calls) == 0
    hub.states.async_set("sensor.fridge", "9")
    await calls.wait_for(1)
    assert calls.last["for"] == timedelta(seconds=SHORT)


async def test_template_error_is_logged_with_the_automation(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    hub.states.async_set("sensor.x", "1")
    calls, _ = await attach(
        hub, {"platform": "template", "value_template": "{{ states('sensor.x') | int(0) > 1 }}"}
    )
    calls2, _ = await attach(
        hub, {"platform": "template", "value_template": "{{ 1 / (states('sensor.x') | int) }}"}
    )
    with caplog.at_level(logging.ERROR):
        hub.states.async_set("sensor.x", "0")
    assert "automation 'Test automation' trigger 0 (template)" in caplog.text
    assert "ZeroDivisionError" in caplog.text
    assert "Test automation trigger/0/value_template" in caplog.text
    hub.states.async_set("sensor.x", "5")
    assert len(calls) == 1  # the other template trigger is unaffected
    assert len(calls2) == 0


# ---- mqtt -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("vendhub/+/status", "vendhub/lobby_1/status", True),
        ("vendhub/+/status", "vendhub/lobby_1/event", False),
        ("vendhub/+/status", "vendhub/a/b/status", False),
        ("vendhub/#", "vendhub/lobby_1/event", True),
        ("vendhub/#", "vendhub", True),
        ("vendhub/lobby_1/#", "vendhub/lobby_2/event", False),
        ("#", "$SYS/broker/uptime", False),
        ("+/+", "a/b", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


async def test_mqtt_wildcards_payload_and_json(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {"platform": "mqtt", "topic": "vendhub/+/status"},
        {"platform": "mqtt", "topic": "vendhub/#", "payload": "offline"},
    )

    def message(topic: str, payload: Any) -> None:
        hub.bus.async_fire(
            EVENT_MQTT_MESSAGE_RECEIVED,
            {"topic": topic, "payload": payload, "qos": 1, "retain": True},
        )

    message("vendhub/lobby_1/status", b'{"state": "online", "seq": 4}')
    message("vendhub/lobby_1/event", "offline")
    message("other/lobby_1/status", "offline")
    message("vendhub/lobby_1/event", "online")
    assert [(t["idx"], t["topic"]) for t in calls.triggers] == [
        ("0", "vendhub/lobby_1/status"),
        ("1", "vendhub/lobby_1/event"),
    ]
    first, second = calls.triggers
    assert first["payload"] == '{"state": "online", "seq": 4}'
    assert first["payload_json"] == {"state": "online", "seq": 4}
    assert first["qos"] == 1
    assert first["retain"] is True
    assert "payload_json" not in second  # "offline" is not JSON
    assert second["description"] == "mqtt topic vendhub/lobby_1/event"


async def test_mqtt_value_template_picks_the_payload_field(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {
            "platform": "mqtt",
            "topic": "vendhub/+/status",
            "value_template": "{{ value_json.state }}",
            "payload": "offline",
        },
    )
    for state in ("online", "offline"):
        hub.bus.async_fire(
            EVENT_MQTT_MESSAGE_RECEIVED,
            {"topic": "vendhub/lobby_1/status", "payload": f'{{"state": "{state}"}}'},
        )
    assert [t["payload_json"]["state"] for t in calls.triggers] == ["offline"]
    assert calls.last["value"] == "offline"


# ---- machine and vend -------------------------------------------------------------------------


async def test_machine_online_offline_and_machine_filter(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {"platform": "machine", "machine_id": ["lobby_1", "lobby_3"], "to": "offline"},
        {"platform": "machine", "id": "any"},
    )
    hub.bus.async_fire(EVENT_MACHINE_OFFLINE, {"machine_id": "lobby_2"})
    hub.bus.async_fire(EVENT_MACHINE_ONLINE, {"machine_id": "lobby_1"})
    hub.bus.async_fire(EVENT_MACHINE_OFFLINE, {"machine_id": "lobby_1"})
    assert [(t["id"], t["machine_id"], t["to"]) for t in calls.triggers] == [
        ("any", "lobby_2", "offline"),
        ("any", "lobby_1", "online"),
        ("0", "lobby_1", "offline"),
        ("any", "lobby_1", "offline"),
    ]
    assert calls.triggers[2]["description"] == "machine lobby_1 went offline"


async def test_vend_steps_and_filters(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {
            "platform": "vend",
            "event": ["completed", "failed"],
            "machine_id": "lobby_1",
            "slot": ["A1", "A2"],
        },
    )
    vend = {"machine_id": "lobby_1", "slot": "A1", "product": "cola", "price": 150}
    hub.bus.async_fire(EVENT_VEND_STARTED, vend)
    hub.bus.async_fire(EVENT_VEND_COMPLETED, {**vend, "slot": "B1"})
    hub.bus.async_fire(EVENT_VEND_COMPLETED, {**vend, "machine_id": "lobby_2"})
    hub.bus.async_fire(EVENT_VEND_COMPLETED, vend)
    hub.bus.async_fire(EVENT_VEND_FAILED, {**vend, "slot": "A2", "reason": "jam"})
    assert [(t["vend_event"], t["slot"], t["product"]) for t in calls.triggers] == [
        ("completed", "A1", "cola"),
        ("failed", "A2", "cola"),
    ]
    assert calls.last["event"].data["reason"] == "jam"
    assert calls.last["description"] == "vend failed on lobby_1 slot A2"


async def test_vend_product_filter_and_default_all_steps(hub: Hub) -> None:
    calls, _ = await attach(hub, {"platform": "vend", "product": "water"})
    hub.bus.async_fire(EVENT_VEND_STARTED, {"machine_id": "m", "slot": "A1", "product": "water"})
    hub.bus.async_fire(EVENT_VEND_COMPLETED, {"machine_id": "m", "slot": "A1", "product": "cola"})
    hub.bus.async_fire(EVENT_VEND_FAILED, {"machine_id": "m", "slot": "A1", "product": "water"})
    assert [t["vend_event"] for t in calls.triggers] == ["started", "failed"]


# ---- common: ids, enabled, variables, errors, unsubscribe --------------------------------------


async def test_disabled_triggers_are_skipped(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {"platform": "event", "event_type": "ping", "enabled": False},
        {"platform": "event", "event_type": "ping", "id": "live"},
    )
    hub.bus.async_fire("ping")
    assert [(t["id"], t["idx"]) for t in calls.triggers] == [("live", "1")]


async def test_trigger_variables_are_rendered_when_it_fires(hub: Hub) -> None:
    calls, _ = await attach(
        hub,
        {
            "platform": "event",
            "event_type": "vend_completed",
            "variables": {"who": "{{ trigger.event.data.machine_id }}-{{ site }}", "fixed": 3},
        },
        variables={"site": "north"},
    )
    hub.bus.async_fire("vend_completed", {"machine_id": "lobby_1"})
    assert calls.last["variables"] == {"who": "lobby_1-north", "fixed": 3}


async def test_unsubscribe_stops_every_platform_and_pending_for(berlin_hub: Hub) -> None:
    hub = berlin_hub
    set_trigger_clock(hub, TriggerClock.starting_at(local("2024-06-03T07:59:59.900")))
    hub.states.async_set("sensor.door", "off")
    hub.states.async_set("sensor.fridge", "5")
    calls, unsubscribe = await attach(
        hub,
        {"platform": "state", "entity_id": "sensor.door", "to": "on", "for": SHORT},
        {"platform": "numeric_state", "entity_id": "sensor.fridge", "above": 8},
        {"platform": "event", "event_type": "ping"},
        {"platform": "time", "at": "08:00"},
        {"platform": "time_pattern", "seconds": "*"},
        {"platform": "template", "value_template": "{{ states('sensor.fridge') | int > 20 }}"},
        {"platform": "mqtt", "topic": "#"},
        {"platform": "machine"},
        {"platform": "vend"},
    )
    hub.states.async_set("sensor.door", "on")  # starts a `for:` wait
    unsubscribe()
    unsubscribe()  # a second call is harmless
    hub.states.async_set("sensor.fridge", "30")
    hub.bus.async_fire("ping")
    hub.bus.async_fire(EVENT_MQTT_MESSAGE_RECEIVED, {"topic": "a", "payload": "b"})
    hub.bus.async_fire(EVENT_MACHINE_OFFLINE, {"machine_id": "lobby_1"})
    hub.bus.async_fire(EVENT_VEND_COMPLETED, {"machine_id": "lobby_1", "slot": "A1"})
    await asyncio.sleep(0.25)  # past 08:00, the next whole second and the `for:` period
    assert len(calls) == 0
    assert hub.data["core.state_change_trackers"].by_entity == {}
    listening = hub.bus.async_listeners()
    for event_type in ("ping", EVENT_MQTT_MESSAGE_RECEIVED, EVENT_MACHINE_OFFLINE, "vend_started"):
        assert event_type not in listening


async def test_failing_action_is_logged_and_the_bus_goes_on(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(trigger: dict[str, Any], context: Context | None) -> None:
        raise RuntimeError("boom in the action")

    async def broken_async(trigger: dict[str, Any], context: Context | None) -> None:
        raise ValueError("async boom")

    seen: list[str] = []
    hub.bus.async_listen("ping", lambda event: seen.append(event.event_type))
    await async_attach_triggers(
        hub, [{"platform": "event", "event_type": "ping"}], broken, name="Broken"
    )
    await async_attach_triggers(
        hub, [{"platform": "event", "event_type": "ping"}], broken_async, name="Broken async"
    )
    calls, _ = await attach(hub, {"platform": "event", "event_type": "ping"})
    with caplog.at_level(logging.ERROR):
        hub.bus.async_fire("ping")
        hub.bus.async_fire("ping")
        await hub.async_block_till_done()
    assert len(calls) == 2
    assert seen == ["ping", "ping"]
    assert "automation 'Broken' trigger 0 (event): the action failed" in caplog.text
    assert "boom in the action" in caplog.text
    assert "automation 'Broken async' trigger 0 (event): the action failed" in caplog.text
    assert "async boom" in caplog.text


async def test_bad_trigger_is_logged_and_the_others_attach(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(hub: Hub, config: dict[str, Any], trigger: Any) -> Any:
        raise RuntimeError("the board is not connected")

    register_trigger_platform(
        TriggerPlatform("exploding", lambda config: {**config, "enabled": True}, explode)
    )
    try:
        with caplog.at_level(logging.ERROR):
            calls, _ = await attach(
                hub,
                {"platform": "stat", "entity_id": "sensor.a"},
                {"platform": "exploding"},
                {"platform": "event", "event_type": "ping"},
            )
    finally:
        del TRIGGER_PLATFORMS["exploding"]
    assert (
        "automation 'Test automation' trigger 0 is invalid and was not attached: platform: "
        "expected a trigger platform" in caplog.text
    )
    assert "did you mean 'state'?" in caplog.text
    assert "automation 'Test automation' trigger 1 (exploding) could not be attached" in caplog.text
    assert "the board is not connected" in caplog.text
    hub.bus.async_fire("ping")
    assert [t["idx"] for t in calls.triggers] == ["2"]


# ---- schema ------------------------------------------------------------------------------------


def schema_error(config: Any) -> str:
    with pytest.raises(vol.Invalid) as error:
        TRIGGER_SCHEMA(config)
    return str(error.value)


def test_schema_messages_are_clear() -> None:
    assert "did you mean 'numeric_state'?" in schema_error({"platform": "numeric", "below": 1})
    assert "a trigger needs 'platform', one of state, numeric_state" in schema_error(
        {"entity_id": "sensor.a"}
    )
    assert "not an option of a state trigger, did you mean 'to'?" in schema_error(
        {"platform": "state", "entity_id": "sensor.a", "tto": "on"}
    )
    assert "did you mean 'sensor.door_1'?" in schema_error(
        {"platform": "state", "entity_id": "sensor.Door 1"}
    )
    assert "YAML reads an unquoted 10:30 as a number, did you mean '10:30'" in schema_error(
        {"platform": "time", "at": 630}
    )
    assert "'above' must be less than 'below'" in schema_error(
        {"platform": "numeric_state", "entity_id": "sensor.a", "above": 9, "below": 3}
    )
    assert "needs 'above', 'below' or both" in schema_error(
        {"platform": "numeric_state", "entity_id": "sensor.a"}
    )
    assert "'#' must be a whole level and the last one" in schema_error(
        {"platform": "mqtt", "topic": "vendhub/#/x"}
    )
    assert "did you mean 'completed'?" in schema_error({"platform": "vend", "event": "complete"})
    assert "invalid template" in schema_error({"platform": "template", "value_template": "{{ x"})
    assert "expected text" in schema_error(
        {"platform": "state", "entity_id": "light.a", "to": True}
    )
    assert "a 'for' period must be longer than 0 seconds" in schema_error(
        {"platform": "state", "entity_id": "light.a", "for": 0}
    )


def test_schema_normalises_and_is_idempotent() -> None:
    config = TRIGGER_SCHEMA(
        {"trigger": "state", "entity_id": "sensor.a, sensor.b", "to": 5, "for": "00:01:00"}
    )
    assert config["platform"] == "state"
    assert config["entity_id"] == ["sensor.a", "sensor.b"]
    assert config["to"] == ["5"]
    assert config["for"].duration == timedelta(minutes=1)
    assert config["enabled"] is True
    assert TRIGGER_SCHEMA(config) == config
    for raw in (
        {"platform": "time_pattern", "minutes": "/5"},
        {"platform": "time", "at": ["08:00", "07:00"]},
        {"platform": "numeric_state", "entity_id": "sensor.a", "above": "number.max"},
        {"platform": "template", "value_template": "{{ true }}", "for": {"minutes": "{{ 1 }}"}},
        {"platform": "vend"},
        {"platform": "machine", "to": "online"},
    ):
        once = TRIGGER_SCHEMA(raw)
        assert TRIGGER_SCHEMA(once) == once


@pytest.fixture(autouse=True)
def _no_platform_leaks() -> Iterator[None]:
    before = set(TRIGGER_PLATFORMS)
    yield
    assert set(TRIGGER_PLATFORMS) == before
