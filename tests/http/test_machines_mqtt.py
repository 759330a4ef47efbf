"""/api/machines on a machine linked over MQTT (a real Mosquitto, a test machine on it):
pending, adoption, prices and modes as retained configs, commands with results and timeouts,
restock, removal."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.mqtt.broker import TestMachine
from tests.mosquitto import Mosquitto
from vendhub.registry import async_load_registries
from vendhub_integrations.mqtt import vendhub_config_schema, vendhub_setup, vendhub_unload

from .conftest import Api, start_api


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
async def linked(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[tuple[Api, str, str]]:
    """The API with the MQTT link on the test broker; the owner's token and the prefix."""
    api = await start_api(tmp_path)
    await async_load_registries(api.hub)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    config = vendhub_config_schema()(
        {
            "broker": {"host": "127.0.0.1", "port": broker.port},
            "topic_prefix": prefix,
            "keepalive": 5,
            "command_timeout": 2,
        }
    )
    assert await vendhub_setup(hub=api.hub, config=config) is True
    runtime = api.hub.data["mqtt"]
    assert await runtime.connection.async_wait_connected(5), runtime.connection.last_error
    owner = (await api.onboard())["access_token"]
    try:
        yield api, owner, prefix
    finally:
        await vendhub_unload(hub=api.hub)
        await api.session.close()
        await api.hub.async_stop()


async def until_pending(api: Api, token: str, machine_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status, pending, _ = await api.call("GET", "/api/machines/pending", token=token)
        assert status == 200, pending
        return next((item for item in pending if item["machine_id"] == machine_id), None)

    for _ in range(500):
        if (found := await check()) is not None:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{machine_id} never showed up as pending")


async def test_an_mqtt_machine_from_announcement_to_removal(
    linked: tuple[Api, str, str], broker: Mosquitto
) -> None:
    api, owner, prefix = linked
    status, me, _ = await api.call("GET", "/api/auth/me", token=owner)
    owner_actor = f"user:{me['user_id']}"
    machine = await TestMachine(broker.port, prefix, "hall_3").connect()
    stray = await TestMachine(broker.port, prefix, "stray_4").connect()
    try:
        await machine.status("online")
        await machine.announce(refrigerated=False)
        await stray.announce(refrigerated=False)
        pending = await until_pending(api, owner, "hall_3")
        assert pending["model"] == "VM-200" and pending["slots"] == ["A1", "A2"]

        status, adopted, _ = await api.call(
            "POST", "/api/machines/hall_3/adopt", token=owner, json={"name": "Hall"}
        )
        assert status == 200, adopted
        assert (adopted["name"], adopted["link"], adopted["slot_count"]) == ("Hall", "mqtt", 2)
        await machine.wait_for(lambda: machine.of("config"))
        status, body, _ = await api.call("POST", "/api/machines/hall_3/adopt", token=owner, json={})
        assert status == 409

        # A price goes out as a new retained config version.
        status, answer, _ = await api.call(
            "PUT", "/api/machines/hall_3/slots/a1", token=owner, json={"price": 175}
        )
        assert status == 200, answer
        assert (answer["delivery"], answer["config_version"]) == ("published", 2)
        config = await machine.wait_for(
            lambda: next((c.json for c in machine.of("config") if c.json["version"] == 2), None)
        )
        assert config["slots"]["A1"]["price"] == 175
        slot = api.hub.states.get("slot.hall_3_a1")
        assert slot.attributes["price"] == 175 and slot.context.user_id == owner_actor

        status, answer, _ = await api.call(
            "PUT", "/api/machines/hall_3/mode", token=owner, json={"mode": "service"}
        )
        assert (status, answer["delivery"], answer["config_version"]) == (200, "published", 3)
        config = await machine.wait_for(
            lambda: next((c.json for c in machine.of("config") if c.json["version"] == 3), None)
        )
        assert config["mode"] == "service"

        # Commands: the machine's result, its refusal, and no answer at all.
        machine.answer = lambda name, command: {
            "ok": True,
            "result": {"slots": {"A1": 10}} if name == "restock" else {"uptime": 5},
            "error": None,
        }
        status, result, _ = await api.call(
            "POST", "/api/machines/hall_3/commands/ping", token=owner, json={}
        )
        assert status == 200, result
        assert (result["ok"], result["result"]) == (True, {"uptime": 5})
        status, result, _ = await api.call(
            "POST", "/api/machines/hall_3/restock", token=owner, json={"slot": "a1"}
        )
        assert (status, result["ok"], result["result"]) == (200, True, {"slots": {"A1": 10}})
        assert machine.of("cmd/restock")[-1].json["args"] == {"slot": "A1"}
        machine.answer = lambda name, command: {"ok": False, "result": None, "error": "jammed"}
        status, result, _ = await api.call(
            "POST", "/api/machines/hall_3/commands/set_door", token=owner, json={"open": True}
        )
        assert (status, result["ok"], result["error"]) == (200, False, "jammed")
        machine.answer = None
        status, body, _ = await api.call(
            "POST", "/api/machines/hall_3/commands/ping?timeout=0.3", token=owner, json={}
        )
        assert status == 504 and body["error"]["code"] == "timeout"
        assert "did not answer command 'ping'" in body["error"]["message"]

        # Removal: the adopted machine, and one that only announced itself.
        status, body, _ = await api.call("DELETE", "/api/machines/hall_3", token=owner)
        assert (status, body["was_adopted"]) == (200, True)
        status, _, _ = await api.call("GET", "/api/machines/hall_3", token=owner)
        assert status == 404
        await until_pending(api, owner, "stray_4")
        status, body, _ = await api.call("DELETE", "/api/machines/stray_4", token=owner)
        assert (status, body["was_adopted"]) == (200, False)
    finally:
        await machine.close()
        await stray.close()
