"""Config confirmation over a real Mosquitto: the hub publishes, the machine says config_applied.

Simulated machines are the code of ``vendhub simulate`` (``SimulatedMachine``: a
``VirtualMachine`` behind a real ``MachineAgent``); old machines are a raw aiomqtt client
that never confirms, or an agent with ``confirm_configs=False``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.mosquitto import Mosquitto
from vendhub.core import Event, Hub
from vendhub.machine.link import EVENT_MACHINE_CONFIG_APPLIED
from vendhub.machine.simulate import SimulatedMachine, virtual_machine
from vendhub.util.dt import utcnow
from vendhub_integrations.alarm import vendhub_setup as alarm_setup
from vendhub_integrations.alarm import vendhub_unload as alarm_unload
from vendhub_integrations.catalog import vendhub_config_schema as catalog_schema
from vendhub_integrations.catalog import vendhub_setup as catalog_setup
from vendhub_integrations.catalog import vendhub_unload as catalog_unload
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .conftest import MachineFactory, adopted_machine, link_config, record, start_link, until

SLOTS = {
    "A1": {"product": "Cola", "price": 150, "capacity": 10, "par": 3, "stock": 8},
    "A2": {"product": "Water", "price": 120, "capacity": 10, "par": 3, "stock": 6},
}

SimulatedFactory = Callable[..., Awaitable[SimulatedMachine]]


@pytest.fixture
async def simulated(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> AsyncIterator[SimulatedFactory]:
    """Start simulated machines (virtual machine + real agent) on the test broker."""
    started: list[SimulatedMachine] = []

    async def start(machine_id: str = "sim_001", **agent_options: Any) -> SimulatedMachine:
        spec = {"machine_id": machine_id, "slots": SLOTS, "sales_per_hour": 0, "seed": 1}
        machine = SimulatedMachine(
            virtual_machine(spec),
            par={code: slot["par"] for code, slot in SLOTS.items()},
            broker_host="127.0.0.1",
            broker_port=broker.port,
            prefix=prefix,
            outbox_path=tmp_path / f"{machine_id}.outbox.db",
            resend_after=1.0,
            keepalive=5,
            **agent_options,
        )
        await machine.agent.start()
        await machine.agent.wait_connected(5)
        started.append(machine)
        return machine

    yield start
    for machine in started:
        await machine.agent.stop()


async def adopt(hub: Hub, runtime: MqttRuntime, machine_id: str) -> None:
    await until(lambda: runtime.directory.get(machine_id) is not None)
    await hub.services.async_call("mqtt", "adopt", {"machine_id": machine_id})


def follow(hub: Hub, entity_id: str) -> list[dict[str, Any]]:
    """The attributes of every state ``entity_id`` takes from now on, in order."""
    seen: list[dict[str, Any]] = []

    def on_change(event: Event) -> None:
        if event.data["entity_id"] == entity_id and event.data["new_state"] is not None:
            seen.append(dict(event.data["new_state"].attributes))

    hub.bus.async_listen("state_changed", on_change)
    return seen


def attributes(hub: Hub, entity_id: str) -> dict[str, Any]:
    state = hub.states.get(entity_id)
    assert state is not None, entity_id
    return dict(state.attributes)


async def test_a_price_change_reaches_a_simulated_machine_and_is_confirmed(
    hub: Hub, broker: Mosquitto, prefix: str, simulated: SimulatedFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    confirmations = record(hub, EVENT_MACHINE_CONFIG_APPLIED)
    machine = await simulated()
    await adopt(hub, runtime, "sim_001")
    # The adoption's version 1 is confirmed too.
    await until(lambda: attributes(hub, "machine.sim_001")["config_applied_version"] == 1)
    assert attributes(hub, "machine.sim_001")["config_pending"] is False

    a1_states = follow(hub, "slot.sim_001_a1")
    machine_states = follow(hub, "machine.sim_001")
    answer = await hub.services.async_call(
        "mqtt", "publish_config", {"machine_id": "sim_001", "slots": {"A1": {"price": 170}}}
    )
    assert answer["version"] == 2
    await until(lambda: attributes(hub, "slot.sim_001_a1")["config_pending"] is False)
    # Pending from the moment it was published until the machine confirmed that version.
    first, last = a1_states[0], a1_states[-1]
    assert (first["config_pending"], first["pending_price"], first["price"]) == (True, 170, 170)
    assert machine_states[0]["config_version"] == 2
    assert machine_states[0]["config_pending"] is True
    assert last["config_pending"] is False and "pending_price" not in last
    assert attributes(hub, "slot.sim_001_a2")["config_pending"] is False
    assert "pending_price" not in attributes(hub, "slot.sim_001_a2")
    slot = attributes(hub, "slot.sim_001_a1")
    assert "pending_price" not in slot and slot["price"] == 170
    machine_attributes = attributes(hub, "machine.sim_001")
    assert machine_attributes["config_applied_version"] == 2
    assert machine_attributes["config_pending"] is False
    assert machine.machine.slots["A1"].price == 170  # the machine sells at the new price
    assert [event.data["version"] for event in confirmations] == [1, 2]
    # The confirmation is an event like any other: acked, so the agent's outbox empties.
    await machine.agent.wait_drained(5)
    stored = runtime.directory.get("sim_001")
    assert stored is not None and (
        stored.config_applied,
        stored.applied["slots"]["A1"]["price"],
    ) == (
        2,
        170,
    )


async def test_a_mode_change_is_pending_until_confirmed(
    hub: Hub, broker: Mosquitto, prefix: str, simulated: SimulatedFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await simulated()
    await adopt(hub, runtime, "sim_001")
    await until(lambda: attributes(hub, "machine.sim_001")["config_applied_version"] == 1)

    machine_states = follow(hub, "machine.sim_001")
    await hub.services.async_call(
        "mqtt", "publish_config", {"machine_id": "sim_001", "mode": "out_of_order"}
    )
    await until(lambda: attributes(hub, "machine.sim_001")["config_pending"] is False)
    pending = machine_states[0]
    assert (pending["mode"], pending["pending_mode"], pending["config_pending"]) == (
        "out_of_order",
        "out_of_order",
        True,
    )
    confirmed = attributes(hub, "machine.sim_001")
    assert "pending_mode" not in confirmed and confirmed["config_applied_version"] == 2
    assert machine.mode == "out_of_order" and machine.machine.sales_per_hour == 0


async def test_machines_that_do_not_confirm_stay_pending_and_raise_an_alarm(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    simulated: SimulatedFactory,
    machines: MachineFactory,
) -> None:
    await alarm_setup(hub=hub)
    runtime = await start_link(hub, link_config(broker, prefix))
    runtime.confirm_timeout = 1.0
    old = await machines("old_1")  # a raw client speaking protocol 1 without config_applied
    await adopted_machine(hub, runtime, old, refrigerated=False)
    silent = await simulated("sim_002", confirm_configs=False)  # an agent that never confirms
    await adopt(hub, runtime, "sim_002")

    for machine_id in ("old_1", "sim_002"):
        await hub.services.async_call(
            "mqtt",
            "publish_config",
            {"machine_id": machine_id, "slots": {"A1": {"price": 99}}},
        )
    await old.wait_for(lambda: any(item.json["version"] == 2 for item in old.of("config")))
    await until(lambda: silent.machine.slots["A1"].price == 99)  # applied, but not confirmed

    for machine_id in ("old_1", "sim_002"):
        slot = attributes(hub, f"slot.{machine_id}_a1")
        assert (slot["config_pending"], slot["pending_price"]) == (True, 99)
        machine = attributes(hub, f"machine.{machine_id}")
        assert (machine["config_pending"], machine["config_applied_version"]) == (True, 0)

    # After the timeout: overdue, with an alarm naming the machine and the version.
    await until(lambda: attributes(hub, "machine.old_1").get("config_overdue"), timeout=5)
    await until(lambda: attributes(hub, "machine.sim_002").get("config_overdue"), timeout=5)
    listed = await hub.services.async_call("alarm", "list", {})
    alarms = {alarm["machine_id"]: alarm for alarm in listed["active"]}
    assert alarms["old_1"]["code"] == "config_not_confirmed"
    assert "did not confirm config version 2" in alarms["old_1"]["message"]
    assert alarms["sim_002"]["data"]["slots"] == ["A1"]
    assert attributes(hub, "slot.old_1_a1")["pending_price"] == 99  # still pending

    # A late confirmation (the old machine upgraded) clears the alarm; what it refused
    # stays pending, with the machine's reason.
    await old.event("config_applied", {"version": 2, "rejected": {"slots.A1": "price locked"}})
    await until(lambda: attributes(hub, "machine.old_1")["config_pending"] is False)
    slot = attributes(hub, "slot.old_1_a1")
    assert (slot["config_pending"], slot["pending_price"], slot["config_rejected"]) == (
        True,
        99,
        "price locked",
    )
    machine = attributes(hub, "machine.old_1")
    assert machine["config_rejected"] == {"slots.A1": "price locked"}
    assert "config_overdue" not in machine
    await until(lambda: "old_1" not in _active_alarm_machines(hub))
    alarm_unload(hub=hub)


def _active_alarm_machines(hub: Hub) -> set[str]:
    manager = hub.data["alarm"]
    return {machine_id for machine_id, _code in manager.active}


async def test_price_windows_publish_new_versions_at_their_edges(
    hub: Hub, broker: Mosquitto, prefix: str, simulated: SimulatedFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await simulated()
    await adopt(hub, runtime, "sim_001")
    await until(lambda: attributes(hub, "machine.sim_001")["config_applied_version"] == 1)
    applied: list[Event] = record(hub, EVENT_MACHINE_CONFIG_APPLIED)

    # A window that opens in 2 s and closes 2 s later, in the hub's time zone (UTC here).
    opens = (utcnow() + timedelta(seconds=2)).replace(microsecond=0) + timedelta(seconds=1)
    closes = opens + timedelta(seconds=2)
    block = {
        "price_lists": {
            "happy_hour": {
                "machines": ["sim_001"],
                "rules": [
                    {
                        "start": opens.strftime("%H:%M:%S"),
                        "end": closes.strftime("%H:%M:%S"),
                        "discount": 20,
                        "slots": ["A1"],
                    }
                ],
            }
        }
    }
    assert await catalog_setup(hub=hub, config=catalog_schema()(block)) is True
    try:
        # Inside the window: version 2 with A1 20 % off, confirmed by the machine.
        await until(lambda: machine.machine.slots["A1"].price == 120, timeout=6)
        assert utcnow() >= opens
        await until(lambda: attributes(hub, "machine.sim_001")["config_applied_version"] == 2)
        assert attributes(hub, "slot.sim_001_a1")["price"] == 120
        assert machine.machine.slots["A2"].price == 120  # A2 is not in the rule
        # After it: version 3, the base price again.
        await until(lambda: machine.machine.slots["A1"].price == 150, timeout=6)
        assert utcnow() >= closes
        await until(lambda: attributes(hub, "machine.sim_001")["config_applied_version"] == 3)
        assert attributes(hub, "slot.sim_001_a1")["price"] == 150
        assert [event.data["version"] for event in applied] == [2, 3]
        stored = runtime.directory.get("sim_001")
        assert stored is not None and stored.config["slots"]["A1"]["price"] == 150  # the plan
    finally:
        await catalog_unload(hub=hub)
