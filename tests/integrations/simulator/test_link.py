"""The link: machine-protocol messages in, entity states and bus events out."""

from __future__ import annotations

import uuid
from typing import Any

from vendhub.const import (
    EVENT_MACHINE_OFFLINE,
    EVENT_MACHINE_ONLINE,
    EVENT_STATE_CHANGED,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
    EVENT_VEND_STARTED,
)
from vendhub.core import Context, Hub

from .conftest import machine_config, record, setup_simulator, simulator_config

TS = "2024-05-06T12:00:00.000+00:00"


def event(name: str, data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    message = {
        "type": "event",
        "v": 1,
        "id": uuid.uuid4().hex,
        "seq": 1,
        "ts": TS,
        "event": name,
        "data": data or {},
    }
    message.update(fields)
    return message


def vend_data(vend_id: str, **extra: Any) -> dict[str, Any]:
    data = {
        "vend_id": vend_id,
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "payment_method": "cash",
    }
    data.update(extra)
    return data


async def test_a_vend_fires_events_with_one_context_that_parents_the_stock_change(
    hub: Hub,
) -> None:
    runtime = await setup_simulator(hub, simulator_config(machine_config(refrigerated=True)))
    link = runtime.link
    vends = record(hub, EVENT_VEND_STARTED, EVENT_VEND_COMPLETED, EVENT_VEND_FAILED)
    changes = record(hub, EVENT_STATE_CHANGED)

    vend_id = uuid.uuid4().hex
    started = event("vend_started", vend_data(vend_id))
    completed = event("vend_completed", vend_data(vend_id, stock=9, cash_box=150))
    assert await link.async_handle_message("lobby_1", started) is True
    assert await link.async_handle_message("lobby_1", completed) is True

    assert [e.event_type for e in vends] == ["vend_started", "vend_completed"]
    assert vends[0].context is vends[1].context
    assert vends[1].data == {
        "machine_id": "lobby_1",
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "currency": "EUR",
        "payment_method": "cash",
        "event_id": completed["id"],
        "vend_id": vend_id,
        "ts": "2024-05-06T12:00:00+00:00",
        "stock": 9,
    }
    assert vends[0].data["event_id"] == started["id"]

    stock_change = next(e for e in changes if e.data["entity_id"] == "slot.lobby_1_a1")
    assert stock_change.data["new_state"].state == "9"
    assert stock_change.context.parent_id == vends[0].context.id
    cash_change = next(e for e in changes if e.data["entity_id"] == "sensor.lobby_1_cash_box")
    assert cash_change.data["new_state"].state == "150"
    assert cash_change.context.parent_id == vends[0].context.id
    machine = hub.states.get("machine.lobby_1")
    assert machine is not None
    assert machine.attributes["sales_today"] == 1
    assert machine.attributes["revenue_today"] == 150


async def test_a_service_context_is_the_parent_of_the_vend(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config())
    vends = record(hub, EVENT_VEND_STARTED)
    cause = Context(user_id="operator")
    messages = runtime.machines["lobby_1"].vend("A1")
    await runtime.async_feed("lobby_1", messages, cause)
    assert vends[0].context.parent_id == cause.id
    assert vends[0].context.user_id == "operator"


async def test_duplicate_event_ids_are_dropped_and_counted(hub: Hub) -> None:
    config = simulator_config(machine_config("lobby_1"), machine_config("kiosk_2"))
    runtime = await setup_simulator(hub, config)
    link = runtime.link
    vends = record(hub, EVENT_VEND_COMPLETED)
    completed = event("vend_completed", vend_data(uuid.uuid4().hex, stock=9))

    results = [await link.async_handle_message("lobby_1", dict(completed)) for _ in range(3)]

    assert results == [True, False, False]
    assert link.stats.duplicates == 2
    assert len(vends) == 1
    state = hub.states.get("machine.lobby_1")
    assert state is not None and state.attributes["sales_today"] == 1
    # the same id from another machine is that machine's own event
    assert await link.async_handle_message("kiosk_2", dict(completed)) is True
    assert link.stats.duplicates == 2
    assert len(vends) == 2


async def test_only_the_last_ids_are_remembered(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config())
    link = runtime.link
    first = event("door_opened")
    assert await link.async_handle_message("lobby_1", first)
    for _ in range(link.dedup_window):
        await link.async_handle_message("lobby_1", event("door_closed"))
    # pushed out of the window: it counts as new again
    assert await link.async_handle_message("lobby_1", dict(first)) is True
    assert link.stats.duplicates == 0


async def test_invalid_messages_are_rejected_and_counted_without_raising(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config())
    link = runtime.link
    vends = record(hub, EVENT_VEND_STARTED, EVENT_VEND_COMPLETED)
    stock_before = hub.states.get("slot.lobby_1_a1")
    bad: list[Any] = [
        "not a dict",
        None,
        {"type": "gossip"},
        # no id
        {"type": "event", "v": 1, "seq": 1, "ts": TS, "event": "vend_completed", "data": {}},
        event("vend_completed", vend_data("v" * 16), seq=-1),
        event("vend_completed", vend_data("v" * 16), ts="yesterday"),
        event("vend_completed", {"slot": "A1"}),  # data incomplete
        event("vend_completed", vend_data("v" * 16, price="1.50")),
        event("vend_failed", vend_data("v" * 16)),  # no reason
        event("restocked", {"slots": {"A1": -3}}),
        {"type": "telemetry", "v": 1, "seq": 1, "ts": TS, "readings": [4.2]},
        {"type": "status", "v": 1, "state": "sleepy"},
    ]
    for message in bad:
        assert await link.async_handle_message("lobby_1", message) is False
    assert link.stats.invalid == len(bad)
    assert vends == []
    assert hub.states.get("slot.lobby_1_a1") == stock_before

    assert await link.async_handle_message("nowhere_9", event("door_opened")) is False
    assert link.stats.unknown_machine == 1
    # an event this hub does not know yet is accepted and ignored
    assert await link.async_handle_message("lobby_1", event("coin_tube_low", {"tube": 2}))
    assert link.stats.ignored == 1


async def test_telemetry_door_restock_and_cash_collection_update_entities(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config(machine_config(refrigerated=True)))
    link = runtime.link
    telemetry = {
        "type": "telemetry",
        "v": 1,
        "seq": 5,
        "ts": TS,
        "readings": {"temperature": 6.349, "compressor": True, "humidity": 40},
    }
    assert await link.async_handle_message("lobby_1", telemetry)
    sensor = hub.states.get("sensor.lobby_1_temperature")
    assert sensor is not None
    assert sensor.state == "6.3"
    assert sensor.attributes["unit_of_measurement"] == "°C"
    assert sensor.attributes["compressor"] == "on"
    assert link.last_seq["lobby_1"] == 5

    await link.async_handle_message("lobby_1", event("door_opened"))
    assert hub.states.is_state("binary_sensor.lobby_1_door", "on")
    await link.async_handle_message("lobby_1", event("door_closed"))
    assert hub.states.is_state("binary_sensor.lobby_1_door", "off")

    await link.async_handle_message("lobby_1", event("restocked", {"slots": {"A2": 2, "Q7": 1}}))
    assert hub.states.is_state("slot.lobby_1_a2", "2")

    await link.async_handle_message(
        "lobby_1", event("vend_completed", vend_data(uuid.uuid4().hex, cash_box=900))
    )
    assert hub.states.is_state("sensor.lobby_1_cash_box", "900")
    await link.async_handle_message(
        "lobby_1", event("cash_collected", {"amount": 900, "cash_box": 0})
    )
    assert hub.states.is_state("sensor.lobby_1_cash_box", "0")


async def test_status_offline_marks_the_machine_and_its_entities(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config())
    link = runtime.link
    changes = record(hub, EVENT_MACHINE_ONLINE, EVENT_MACHINE_OFFLINE)

    await link.async_handle_message("lobby_1", {"type": "status", "v": 1, "state": "offline"})
    assert hub.states.is_state("machine.lobby_1", "offline")
    assert hub.states.is_state("slot.lobby_1_a1", "unavailable")
    assert hub.states.is_state("binary_sensor.lobby_1_door", "unavailable")

    await link.async_handle_message(
        "lobby_1", {"type": "status", "v": 1, "state": "online", "firmware": "2.1.0", "ts": TS}
    )
    assert hub.states.is_state("slot.lobby_1_a1", "10")
    machine = hub.states.get("machine.lobby_1")
    assert machine is not None and machine.state == "online"
    assert machine.attributes["firmware"] == "2.1.0"
    assert [e.event_type for e in changes] == ["machine_offline", "machine_online"]
    assert changes[0].data["machine_id"] == "lobby_1"

    # the same status again changes nothing
    await link.async_handle_message("lobby_1", {"type": "status", "v": 1, "state": "online"})
    assert len(changes) == 2


async def test_sales_of_today_start_afresh_on_a_new_local_day(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config())
    link = runtime.link
    for ts in ("2024-05-06T10:00:00+00:00", "2024-05-06T23:59:00+00:00"):
        await link.async_handle_message(
            "lobby_1", event("vend_completed", vend_data(uuid.uuid4().hex), ts=ts)
        )
    await link.async_handle_message(
        "lobby_1",
        event(
            "vend_completed", vend_data(uuid.uuid4().hex, price=90), ts="2024-05-07T08:00:00+00:00"
        ),
    )
    machine = hub.states.get("machine.lobby_1")
    assert machine is not None
    assert (machine.attributes["sales_today"], machine.attributes["revenue_today"]) == (1, 90)
    # a late message of the day before does not count toward today
    await link.async_handle_message(
        "lobby_1", event("vend_completed", vend_data(uuid.uuid4().hex), ts=TS)
    )
    machine = hub.states.get("machine.lobby_1")
    assert machine is not None and machine.attributes["sales_today"] == 1
