"""Messages of adopted machines: availability, last will, telemetry, events, bad payloads."""

from __future__ import annotations

import json

from tests.mosquitto import Mosquitto
from vendhub.const import (
    EVENT_MACHINE_OFFLINE,
    EVENT_MACHINE_ONLINE,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_STARTED,
)
from vendhub.core import Hub

from .broker import vend_data
from .conftest import MachineFactory, adopted_machine, link_config, record, start_link, until


async def test_status_and_the_last_will_drive_availability(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    changes = record(hub, EVENT_MACHINE_ONLINE, EVENT_MACHINE_OFFLINE)

    await machine.status("offline")
    await until(lambda: hub.states.is_state("machine.lobby_1", "offline"))
    assert hub.states.is_state("slot.lobby_1_a1", "unavailable")
    assert hub.states.is_state("sensor.lobby_1_temperature", "unavailable")
    # the link's own diagnostics stay available
    assert hub.states.is_state("sensor.lobby_1_link_errors", "0")

    await machine.status("online")
    await until(lambda: hub.states.is_state("machine.lobby_1", "online"))
    assert hub.states.is_state("slot.lobby_1_a1", "8")

    # a power cut: the connection drops without DISCONNECT and the broker sends the will
    await machine.kill()
    await until(lambda: hub.states.is_state("machine.lobby_1", "offline"))
    assert [event.event_type for event in changes] == [
        "machine_offline",
        "machine_online",
        "machine_offline",
    ]
    assert {event.data["machine_id"] for event in changes} == {"lobby_1"}
    assert runtime.directory.get("lobby_1").status == "offline"

    # it comes back
    back = await machines("lobby_1")
    await back.status("online")
    await until(lambda: hub.states.is_state("machine.lobby_1", "online"))
    assert changes[-1].event_type == "machine_online"


async def test_the_late_will_of_a_replaced_connection_is_ignored(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    old = await machines("lobby_1")
    await adopted_machine(hub, runtime, old)
    received = record(hub, "mqtt_message_received")
    # the machine reconnected (say, over another interface) before the old link died
    new = await machines("lobby_1")
    await new.status("online")
    await old.kill()
    await until(lambda: any(old.session in event.data["payload"] for event in received))
    assert hub.states.is_state("machine.lobby_1", "online")
    assert runtime.directory.get("lobby_1").status == "online"
    # the will of the current connection counts
    await new.kill()
    await until(lambda: hub.states.is_state("machine.lobby_1", "offline"))


async def test_telemetry_updates_temperature_door_cash_and_health(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)

    await machine.telemetry(
        {
            "temperature": 5.26,
            "compressor": True,
            "door_open": False,
            "cash_box": 1250,
            "rssi": -67,
            "uptime": 3600.5,
            "software_version": "0.1.0",
            "humidity": 41,
        },
        seq=1,
    )
    await until(lambda: hub.states.is_state("sensor.lobby_1_temperature", "5.3"))
    temperature = hub.states.get("sensor.lobby_1_temperature")
    assert temperature is not None
    assert temperature.attributes["compressor"] == "on"
    assert temperature.attributes["unit_of_measurement"] == "°C"
    assert hub.states.is_state("binary_sensor.lobby_1_door", "off")
    assert hub.states.is_state("sensor.lobby_1_cash_box", "1250")
    health = hub.states.get("machine.lobby_1").attributes
    assert (health["rssi"], health["uptime"], health["software_version"]) == (-67, 3600.5, "0.1.0")

    # seq 2 and 3 were lost on the way (telemetry is QoS 0): counted, nothing else happens
    await machine.telemetry({"temperature": 6.04}, seq=4)
    await until(lambda: hub.states.is_state("sensor.lobby_1_temperature", "6.0"))
    errors = hub.states.get("sensor.lobby_1_link_errors")
    assert errors is not None
    assert errors.state == "0"
    assert errors.attributes["seq_gaps"] == 2
    assert runtime.link.seq_gaps["lobby_1"] == 2


async def test_events_become_bus_events_and_every_message_fires_mqtt_message_received(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine, refrigerated=False)
    vends = record(hub, EVENT_VEND_STARTED, EVENT_VEND_COMPLETED)
    received = record(hub, "mqtt_message_received")

    vend_id = "f" * 32
    started = await machine.event("vend_started", vend_data(vend_id))
    completed = await machine.event("vend_completed", vend_data(vend_id, stock=7, cash_box=150))
    await until(lambda: len(vends) == 2)
    assert [event.event_type for event in vends] == ["vend_started", "vend_completed"]
    assert vends[0].context is vends[1].context
    assert vends[1].data == {
        "machine_id": "lobby_1",
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "currency": "EUR",
        "payment_method": "cash",
        "event_id": completed,
        "vend_id": vend_id,
        "ts": "2024-05-06T12:00:00+00:00",
        "stock": 7,
    }
    assert hub.states.is_state("slot.lobby_1_a1", "7")
    assert hub.states.is_state("sensor.lobby_1_cash_box", "150")
    assert hub.states.get("machine.lobby_1").attributes["sales_today"] == 1
    # without a recorder both are acked once processed
    await machine.wait_acked(completed)
    assert set(machine.acked()) == {started, completed}

    topics = [event.data["topic"] for event in received]
    assert topics == [f"{prefix}/lobby_1/event", f"{prefix}/lobby_1/event"]
    first = received[0].data
    assert (first["qos"], first["retain"]) == (1, False)
    assert json.loads(first["payload"])["id"] == started


async def test_bad_messages_are_counted_per_machine_and_the_connection_stays_up(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    received = record(hub, "mqtt_message_received")

    good = {"v": 1, "id": "a" * 32, "seq": 1, "ts": "2024-05-06T12:00:00Z", "event": "door_opened"}
    await machine.publish("event", b"{not json")
    await machine.publish("event", b"\xff\xfe")
    await machine.publish("event", {**good, "v": 2})
    await machine.publish("event", {key: value for key, value in good.items() if key != "v"})
    await machine.publish("event", {**good, "event": "vend_completed", "data": {"slot": "A1"}})
    await machine.publish("telemetry", {"v": 1, "seq": 1, "ts": "now", "readings": {}})
    await machine.publish("status", {"v": 1, "state": "sleepy"})
    await until(lambda: hub.states.is_state("sensor.lobby_1_link_errors", "7"))
    errors = hub.states.get("sensor.lobby_1_link_errors")
    assert errors is not None
    assert errors.attributes["bad_payload"] == 2
    assert errors.attributes["wrong_version"] == 2
    assert errors.attributes["schema"] == 3
    assert "state" in errors.attributes["last_error"]
    assert len(received) == 7  # bad ones fire mqtt_message_received too

    # a machine nobody adopted, and a topic that is no protocol topic, count hub-wide
    stranger = await machines("stranger_5")
    await stranger.publish("event", b"[]")
    await until(lambda: hub.states.is_state("sensor.mqtt_link_errors", "1"))
    assert hub.states.get("sensor.mqtt_link_errors").attributes["schema"] == 1

    # the connection never dropped, and the next good message is handled
    await machine.publish("event", good)
    await until(lambda: hub.states.is_state("binary_sensor.lobby_1_door", "on"))
    await machine.wait_acked(good["id"])
    assert runtime.connection.connects == 1
    assert runtime.connection.failures == 0
    assert runtime.connection.connected
    assert machine.acked() == [good["id"]]  # bad events are never acked
