"""Commands over a real broker: a round trip with a correlation id, a failure, a timeout."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.mosquitto import Mosquitto
from vendhub.core import Hub
from vendhub.core.errors import InvalidServiceData
from vendhub_integrations.mqtt.commands import CommandTimeout

from .conftest import MachineFactory, adopted_machine, link_config, start_link, until


async def test_a_command_returns_the_machines_result(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    seen: list[tuple[str, dict[str, Any]]] = []

    def answer(name: str, command: dict[str, Any]) -> dict[str, Any]:
        seen.append((name, command))
        if name == "restock":
            return {"ok": True, "result": {"slots": {command["args"]["slot"]: 10}}, "error": None}
        return {"ok": False, "result": None, "error": f"unknown command {name}"}

    machine.answer = answer
    result = await hub.services.async_call(
        "mqtt", "command", {"machine_id": "lobby_1", "name": "restock", "args": {"slot": "A1"}}
    )
    [(name, command)] = seen
    assert name == "restock"
    assert command["v"] == 1
    assert command["args"] == {"slot": "A1"}
    assert result == {
        "machine_id": "lobby_1",
        "command": "restock",
        "id": command["id"],
        "ok": True,
        "result": {"slots": {"A1": 10}},
        "error": None,
    }

    failed = await hub.services.async_call(
        "mqtt", "command", {"machine_id": "lobby_1", "name": "dance"}
    )
    assert failed["ok"] is False
    assert failed["error"] == "unknown command dance"
    assert failed["id"] != result["id"]
    assert runtime.commands.pending == 0


async def test_a_command_without_an_answer_times_out_clearly(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)  # it never answers

    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"lobby_1 did not answer command 'ping' within 0.3 s"):
        await hub.services.async_call(
            "mqtt", "command", {"machine_id": "lobby_1", "name": "ping", "timeout": 0.3}
        )
    assert 0.3 <= time.monotonic() - started < 2
    # the command did reach the machine, and nothing keeps waiting for it
    await machine.wait_for(lambda: machine.of("cmd/ping"))
    assert runtime.commands.pending == 0

    # a late answer is dropped and counted, not mistaken for another command's
    command = machine.of("cmd/ping")[0].json
    await machine.publish("cmd_result", {"v": 1, "id": command["id"], "ok": True})
    await until(lambda: runtime.commands.unmatched)
    assert runtime.commands.unmatched == 1


async def test_commands_need_an_adopted_machine_and_valid_arguments(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory
) -> None:
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    with pytest.raises(InvalidServiceData, match="no machine 'nobody_1' has announced"):
        await hub.services.async_call("mqtt", "command", {"machine_id": "nobody_1", "name": "ping"})
    with pytest.raises(InvalidServiceData, match=r"args > open: is required"):
        await hub.services.async_call(
            "mqtt", "command", {"machine_id": "lobby_1", "name": "set_door", "args": {}}
        )
    with pytest.raises(InvalidServiceData, match="expected a command name"):
        await hub.services.async_call(
            "mqtt", "command", {"machine_id": "lobby_1", "name": "Ping Now"}
        )
    assert machine.of("cmd/set_door") == []
