"""The machine protocol over HTTP: a WebSocket and a POST, through the MQTT link's handler.

The hub here has a recorder, the HTTP API and the MQTT link pointed at a broker that is not
there: the HTTP transport must not need one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from tests.sqlite_lock import locked_sqlite
from vendhub.const import EVENT_MACHINE_CONNECTION, EVENT_MONEY_RECORDED
from vendhub.core import Hub
from vendhub.http.server import get_http
from vendhub.machine.agent import new_event
from vendhub.machine.credentials import CredentialStore
from vendhub.machine.http_link import HttpMachineAgent
from vendhub.recorder.models import VendTransaction
from vendhub.recorder.recorder import Recorder
from vendhub_integrations.http import CONFIG_SCHEMA as HTTP_SCHEMA
from vendhub_integrations.http import async_setup as http_setup
from vendhub_integrations.http import async_unload as http_unload
from vendhub_integrations.mqtt import vendhub_config_schema, vendhub_unload
from vendhub_integrations.mqtt.http_transport import (
    REASON_WRONG_MACHINE,
    URL_EVENTS,
    URL_WEBSOCKET,
)
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .broker import TS, slots, vend_data
from .conftest import make_hub, record, start_link, start_recorder, until

MACHINE = "lobby_1"
OTHER = "gym_2"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class HttpHub:
    """A hub with a recorder, the HTTP API and the MQTT link (its broker unreachable)."""

    hub: Hub
    recorder: Recorder
    runtime: MqttRuntime
    url: str
    session: aiohttp.ClientSession
    passwords: dict[str, str] = field(default_factory=dict)

    async def token(self, machine_id: str = MACHINE) -> str:
        async with self.session.post(
            f"{self.url}/api/auth/login",
            json={
                "grant_type": "machine",
                "machine_id": machine_id,
                "password": self.passwords[machine_id],
            },
        ) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["access_token"])

    async def token_for(self, machine_id: str, password: str) -> str:
        self.passwords[machine_id] = password
        return await self.token(machine_id)

    async def post_events(
        self, token: str | None, events: list[Any], **params: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.post(
            self.url + URL_EVENTS, json=events, headers=headers, params=params
        ) as response:
            return response.status, await response.json()

    def ledger_rows(self, event_id: str) -> int:
        with self.recorder.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(VendTransaction)
                    .where(VendTransaction.source_event_id == event_id)
                ).scalar()
            )

    async def stop(self) -> None:
        await self.session.close()
        if "mqtt" in self.hub.data:
            await vendhub_unload(hub=self.hub)
        await http_unload(self.hub)
        if not self.hub.is_stopping:
            await self.hub.async_stop()
        await self.recorder.async_stop()


async def start_http_hub(
    folder: Path,
    *,
    port: int = 0,
    machines: tuple[str, ...] = (MACHINE, OTHER),
    before_link: Callable[[Hub], Any] | None = None,
) -> HttpHub:
    folder.mkdir(parents=True, exist_ok=True)
    hub = await make_hub(folder)
    recorder = await start_recorder(hub, folder, commit_interval=0.1)
    store = CredentialStore(hub)
    passwords: dict[str, str] = {}
    for machine_id in machines:
        _user, passwords[machine_id] = await store.async_add_machine(machine_id, rotate=True)
    assert await http_setup(hub, HTTP_SCHEMA({"server_host": "127.0.0.1", "server_port": port}))
    if before_link is not None:
        await before_link(hub)
    config = vendhub_config_schema()(
        {
            "broker": {"host": "127.0.0.1", "port": free_port()},  # nobody listens there
            "topic_prefix": "vendhub",
            "keepalive": 5,
            "command_timeout": 2,
        }
    )
    runtime = await start_link(hub, config, connect=False)
    assert runtime.http_transport is not None
    return HttpHub(hub, recorder, runtime, get_http(hub).url, aiohttp.ClientSession(), passwords)


@pytest.fixture
async def http_hub(tmp_path: Path) -> AsyncIterator[HttpHub]:
    instance = await start_http_hub(tmp_path)
    yield instance
    await instance.stop()


class WsMachine:
    """A machine on the hub's machine WebSocket; records every frame the hub sends."""

    def __init__(self, hub: HttpHub, machine_id: str = MACHINE) -> None:
        self.hub = hub
        self.machine_id = machine_id
        self.session_id = uuid.uuid4().hex
        self.frames: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0

    async def connect(self, *, bearer: bool = False, token: str | None = None) -> WsMachine:
        token = token or await self.hub.token(self.machine_id)
        headers = {"Authorization": f"Bearer {token}"} if bearer else {}
        self.ws = await self.hub.session.ws_connect(self.hub.url + URL_WEBSOCKET, headers=headers)
        if not bearer:
            assert (await self.ws.receive_json())["type"] == "auth_required"
            await self.ws.send_json({"type": "auth", "access_token": token})
        answer = await self.ws.receive_json()
        assert answer == {"type": "auth_ok", "machine_id": self.machine_id, "v": 1}, answer
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def send(self, kind: str, payload: Any, **extra: Any) -> None:
        assert self.ws is not None
        await self.ws.send_json({"kind": kind, "payload": payload, **extra})

    async def status(self, state: str = "online") -> None:
        await self.send(
            "status",
            {
                "v": 1,
                "state": state,
                "ts": TS,
                "model": "VM-200",
                "firmware": "2.4.1",
                "session": self.session_id,
            },
        )

    async def announce(self) -> None:
        await self.send(
            "announce",
            {
                "v": 1,
                "ts": TS,
                "model": "VM-200",
                "firmware": "2.4.1",
                "currency": "EUR",
                "refrigerated": True,
                "capabilities": ["cash", "card"],
                "slots": slots(),
            },
        )

    def event_message(
        self, name: str, data: dict[str, Any] | None = None, event_id: str | None = None
    ) -> dict[str, Any]:
        self._seq += 1
        return {
            "v": 1,
            "id": event_id or uuid.uuid4().hex,
            "seq": self._seq,
            "ts": TS,
            "event": name,
            "data": data or {},
        }

    async def event(
        self, name: str, data: dict[str, Any] | None = None, event_id: str | None = None
    ) -> str:
        message = self.event_message(name, data, event_id)
        await self.send("event", message)
        return str(message["id"])

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f["payload"] for f in self.frames if f.get("kind") == kind]

    def acked(self) -> list[str]:
        return [event_id for ack in self.of("ack") for event_id in ack["ids"]]

    async def wait_for(self, check: Callable[[], Any], timeout: float = 5.0) -> Any:
        return await until(check, timeout)


async def adopt(http_hub: HttpHub, machine: WsMachine) -> None:
    await machine.status("online")
    await machine.announce()
    runtime = http_hub.runtime
    await until(lambda: runtime.directory.get(machine.machine_id) is not None)
    await http_hub.hub.services.async_call("mqtt", "adopt", {"machine_id": machine.machine_id})
    await machine.wait_for(lambda: machine.of("config"))


# ---- the tests -------------------------------------------------------------------------------


async def test_a_machine_over_the_websocket_from_announce_to_goodbye(
    http_hub: HttpHub, tmp_path: Path
) -> None:
    hub, runtime = http_hub.hub, http_hub.runtime
    assert not runtime.connection.connected  # no broker at all
    pending = record(hub, "mqtt_machine_pending")
    machine = await WsMachine(http_hub).connect()

    # announce: pending, nothing of it acked
    await machine.status("online")
    await machine.announce()
    await until(lambda: pending)
    assert [m["machine_id"] for m in runtime.pending()] == [MACHINE]
    early = await machine.event("door_opened")
    await asyncio.sleep(0.2)
    assert early not in machine.acked()
    assert runtime.hub_errors.by_reason.get("not_adopted") == 1

    # adopted: entities, and its config over the WebSocket
    await hub.services.async_call("mqtt", "adopt", {"machine_id": MACHINE})
    config = await machine.wait_for(lambda: machine.of("config"))
    assert config[0]["version"] == 1 and config[0]["slots"]["A1"]["price"] == 150
    assert hub.states.is_state("machine.lobby_1", "online")

    # the outbox sends the early event again: now it counts
    await machine.send("event", {**machine.event_message("door_opened", event_id=early)})
    await machine.wait_for(lambda: early in machine.acked())

    # telemetry sets states
    machine._seq += 1
    await machine.send(
        "telemetry",
        {"v": 1, "seq": machine._seq, "ts": TS, "readings": {"temperature": 5.5}},
    )
    await until(lambda: hub.states.is_state("sensor.lobby_1_temperature", "5.5"))

    # a sale: acked only after the recorder committed it, however often it comes
    recorded = record(hub, EVENT_MONEY_RECORDED)
    with locked_sqlite(tmp_path / "vendhub.db"):
        sale = await machine.event("vend_completed", vend_data(stock=7))
        await until(lambda: hub.states.is_state("slot.lobby_1_a1", "7"))
        status, answer = await http_hub.post_events(
            await http_hub.token(),
            [machine.event_message("vend_completed", vend_data(stock=7), sale)],
            wait=0.3,
        )
        assert status == 202 and answer["pending"] == [sale] and answer["acked"] == []
        await asyncio.sleep(0.3)
        assert sale not in machine.acked() and not recorded
    await machine.wait_for(lambda: sale in machine.acked(), timeout=10)
    assert [e.data["event_id"] for e in recorded] == [sale]
    # and once more, over both: acked at once, still one ledger row
    await machine.send("event", machine.event_message("vend_completed", vend_data(), sale))
    status, answer = await http_hub.post_events(
        await http_hub.token(), [machine.event_message("vend_completed", vend_data(), sale)]
    )
    assert (status, answer["acked"]) == (200, [sale])
    await machine.wait_for(lambda: machine.acked().count(sale) >= 2)
    await http_hub.recorder.async_flush()
    assert http_hub.ledger_rows(sale) == 1
    assert hub.states.is_state("slot.lobby_1_a1", "7")

    # a command and its result, by correlation id
    async def answer_commands() -> None:
        command = await machine.wait_for(lambda: machine.of("cmd/ping"))
        await machine.send(
            "cmd_result",
            {"v": 1, "id": command[0]["id"], "ok": True, "result": {"pong": 1}, "error": None},
        )

    answering = asyncio.get_running_loop().create_task(answer_commands())
    result = await runtime.async_command(MACHINE, "ping")
    await answering
    assert result["ok"] is True and result["result"] == {"pong": 1}

    # a new price: a new config, over the WebSocket
    await runtime.async_publish_config(MACHINE, slots={"A1": {"price": 170}})
    configs = await machine.wait_for(
        lambda: len(machine.of("config")) == 2 and machine.of("config")
    )
    assert configs[-1]["version"] == 2 and configs[-1]["slots"]["A1"]["price"] == 170

    # the socket closes without a word: its last will
    await machine.close()
    await until(lambda: hub.states.is_state("machine.lobby_1", "offline"))


async def test_post_events_answers_after_the_commit_and_refuses_bad_ones(
    http_hub: HttpHub,
) -> None:
    machine = await WsMachine(http_hub).connect()
    await adopt(http_hub, machine)
    token = await http_hub.token()
    sale = machine.event_message("vend_completed", vend_data(stock=6))
    door = machine.event_message("door_closed")
    bad = machine.event_message("vend_completed", {"slot": "A1"})  # no price, ...
    status, answer = await http_hub.post_events(token, [sale, door, bad, sale])
    assert status == 200
    assert answer["acked"] == [sale["id"], door["id"]] and answer["pending"] == []
    assert [r["index"] for r in answer["rejected"]] == [2]
    assert answer["rejected"][0]["id"] == bad["id"]
    # the machine did not get the POST's acks twice over its WebSocket... it may: harmless
    status, again = await http_hub.post_events(token, [sale])
    assert (status, again["acked"]) == (200, [sale["id"]])
    await http_hub.recorder.async_flush()
    assert http_hub.ledger_rows(sale["id"]) == 1
    errors = http_hub.hub.states.get("sensor.lobby_1_link_errors")
    assert errors is not None and errors.state == "1"


async def test_a_machine_speaks_only_for_itself(http_hub: HttpHub) -> None:
    machine = await WsMachine(http_hub).connect()
    await adopt(http_hub, machine)
    other = await WsMachine(http_hub, OTHER).connect()
    await other.status("online")
    await other.announce()
    await until(lambda: http_hub.runtime.directory.get(OTHER) is not None)
    await http_hub.hub.services.async_call("mqtt", "adopt", {"machine_id": OTHER})
    await other.close()

    await machine.send("status", {"v": 1, "state": "offline", "ts": TS}, machine_id=OTHER)
    errors = await machine.wait_for(lambda: machine.of("error"))
    assert errors[0]["reason"] == REASON_WRONG_MACHINE
    status, body = await http_hub.post_events(
        await http_hub.token(), [machine.event_message("door_opened")], machine_id=OTHER
    )
    assert status == 403, body
    sensor = http_hub.hub.states.get("sensor.lobby_1_link_errors")
    assert sensor is not None and sensor.attributes.get(REASON_WRONG_MACHINE) == 2
    assert http_hub.hub.states.get("machine.gym_2").state != "online"  # untouched by lobby_1
    assert not machine.of("ack")

    # a renewed token, in-band: its own is taken, another machine's is refused
    assert machine.ws is not None
    await machine.ws.send_json({"type": "auth", "access_token": await http_hub.token()})
    await machine.wait_for(lambda: any(f.get("type") == "auth_ok" for f in machine.frames))
    await machine.ws.send_json({"type": "auth", "access_token": await http_hub.token(OTHER)})
    errors = await machine.wait_for(lambda: len(machine.of("error")) == 2 and machine.of("error"))
    assert errors[1]["reason"] == REASON_WRONG_MACHINE
    await machine.close()


async def test_no_token_no_transport(http_hub: HttpHub) -> None:
    status, body = await http_hub.post_events(None, [{"v": 1}])
    assert status == 401, body
    async with http_hub.session.get(http_hub.url + URL_WEBSOCKET) as response:
        assert response.status == 401
    # a bad token on the upgrade, or in the auth message
    ws = await http_hub.session.ws_connect(
        http_hub.url + URL_WEBSOCKET, headers={"Authorization": "Bearer nope"}
    )
    assert (await ws.receive_json())["type"] == "auth_invalid"
    assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await ws.close()
    assert ws.close_code == 1008
    ws = await http_hub.session.ws_connect(http_hub.url + URL_WEBSOCKET)
    assert (await ws.receive_json())["type"] == "auth_required"
    await ws.send_json({"type": "auth", "access_token": "x.y.z"})
    assert (await ws.receive_json())["type"] == "auth_invalid"
    await ws.close()
    # a person's token is no machine's
    async with http_hub.session.post(
        http_hub.url + "/api/onboarding",
        json={"username": "olga", "password": "correct horse battery", "name": "Olga"},
    ) as response:
        owner = (await response.json())["access_token"]
    status, body = await http_hub.post_events(owner, [{"v": 1}])
    assert status == 403, body
    ws = await http_hub.session.ws_connect(http_hub.url + URL_WEBSOCKET)
    await ws.receive_json()
    await ws.send_json({"type": "auth", "access_token": owner})
    refused = await ws.receive_json()
    assert refused["type"] == "auth_invalid" and "only machines" in refused["message"]
    await ws.close()
    assert http_hub.runtime.http_transport is not None
    assert http_hub.runtime.http_transport.stats.connections == 0


async def test_two_connections_with_one_machines_credentials(tmp_path: Path) -> None:
    from tests.anomaly.conftest import FakeClock, anomaly_alarms, start_anomaly
    from vendhub.anomaly.credentials import CODE
    from vendhub_integrations.alarm import vendhub_setup as alarm_setup

    clock = FakeClock()

    async def anomaly(hub: Hub) -> None:
        await alarm_setup(hub=hub)
        await start_anomaly(hub, clock, {"credentials": {"grace": 0}})

    http_hub = await start_http_hub(tmp_path, before_link=anomaly)
    try:
        hub = http_hub.hub
        connections = record(hub, EVENT_MACHINE_CONNECTION)
        first = await WsMachine(http_hub).connect()
        await until(lambda: connections)
        assert anomaly_alarms(hub) == {}
        second = await WsMachine(http_hub).connect(bearer=True)
        await until(lambda: len(connections) == 2)
        data = [event.data for event in connections]
        assert [d["state"] for d in data] == ["connected", "connected"]
        assert {d["transport"] for d in data} == {"websocket"}
        assert data[0]["connection_id"] != data[1]["connection_id"]
        assert data[0]["remote"] == "127.0.0.1" and data[0]["machine_id"] == MACHINE
        await hub.async_block_till_done()
        alarm = anomaly_alarms(hub)[(MACHINE, CODE)]
        assert "2 connections" in alarm.message
        await second.close()
        await until(lambda: len(connections) == 3)
        assert connections[2].data["state"] == "disconnected"
        assert connections[2].data["connection_id"] == data[1]["connection_id"]
        await hub.async_block_till_done()
        assert anomaly_alarms(hub) == {}
        await first.close()
    finally:
        await http_hub.stop()


async def test_one_machine_two_sockets_the_old_ones_will_is_ignored(http_hub: HttpHub) -> None:
    old = await WsMachine(http_hub).connect()
    await adopt(http_hub, old)
    new = WsMachine(http_hub)
    await new.connect()
    await new.status("online")
    await new.wait_for(lambda: new.of("config"))  # config on connect, to an adopted machine
    await old.close()  # its will names its own session: not the machine's latest
    await asyncio.sleep(0.2)
    assert http_hub.hub.states.is_state("machine.lobby_1", "online")
    # the hub now sends to the socket that is left
    await http_hub.runtime.async_publish_config(MACHINE, mode="service")
    await new.wait_for(lambda: new.of("config")[-1]["mode"] == "service")
    await new.status("offline")  # a goodbye in words: no will after it
    await until(lambda: http_hub.hub.states.is_state("machine.lobby_1", "offline"))
    await new.close()


# ---- the machine agent over HTTP -------------------------------------------------------------


def http_agent(http_hub: HttpHub, port: int, folder: Path, password: str) -> HttpMachineAgent:
    return HttpMachineAgent(
        MACHINE,
        broker_host="127.0.0.1",
        broker_port=port,
        password=password,
        outbox_path=folder / "outbox.db",
        announce={
            "model": "VM-200",
            "firmware": "2.4.1",
            "currency": "EUR",
            "refrigerated": True,
            "capabilities": ["cash"],
            "slots": slots(),
        },
        resend_after=0.5,
        backoff_min=0.05,
        backoff_max=0.3,
        command_handler=lambda name, args: {"did": name, **args},
    )


async def test_the_agent_over_http(http_hub: HttpHub, tmp_path: Path) -> None:
    hub, runtime = http_hub.hub, http_hub.runtime
    port = int(http_hub.url.rsplit(":", 1)[1])
    agent = http_agent(http_hub, port, tmp_path, http_hub.passwords[MACHINE])
    await agent.start()
    try:
        await agent.wait_connected(5)
        await until(lambda: runtime.directory.get(MACHINE) is not None)
        sale = await agent.publish_event(new_event("vend_completed", vend_data(stock=6)))
        assert sale
        await asyncio.sleep(0.3)
        assert agent.pending == 1  # not adopted: kept in the outbox
        await hub.services.async_call("mqtt", "adopt", {"machine_id": MACHINE})
        await until(lambda: agent.config is not None)
        assert agent.config is not None and agent.config["version"] == 1
        await agent.wait_drained(10)  # resent after adoption, acked after the commit
        await http_hub.recorder.async_flush()
        assert hub.states.is_state("slot.lobby_1_a1", "6")
        result = await runtime.async_command(MACHINE, "lock_slots", {"slots": ["A1"]})
        assert result["ok"] and result["result"]["did"] == "lock_slots"
        ping = await runtime.async_command(MACHINE, "ping")
        assert ping["result"]["session"] == agent.session
    finally:
        await agent.stop()
    await until(lambda: hub.states.is_state("machine.lobby_1", "offline"))


async def test_events_made_while_the_hub_is_down_are_recorded_once(tmp_path: Path) -> None:
    port = free_port()
    first = await start_http_hub(tmp_path / "hub", port=port)
    password = first.passwords[MACHINE]
    agent = http_agent(first, port, tmp_path, password)
    await agent.start()
    try:
        await agent.wait_connected(5)
        await until(lambda: first.runtime.directory.get(MACHINE) is not None)
        await first.hub.services.async_call("mqtt", "adopt", {"machine_id": MACHINE})
        before = new_event("vend_completed", vend_data(stock=9))
        await agent.publish_event(before)
        await agent.wait_drained(10)
        await first.stop()
        await until(lambda: not agent.connected)

        sales = [new_event("vend_completed", vend_data(stock=8 - n)) for n in range(3)]
        await agent.publish_events(sales)
        await asyncio.sleep(0.5)
        assert agent.pending == 3

        second = await start_http_hub(tmp_path / "hub", port=port, machines=())
        try:
            await agent.wait_connected(10)
            await agent.wait_drained(15)
            await second.recorder.async_flush()
            for sale in [before, *sales]:
                assert second.ledger_rows(sale["id"]) == 1
            # the outbox sends a sale once more (an ack lost, say): still one row
            token = await second.token_for(MACHINE, password)
            status, answer = await second.post_events(token, [{**sales[0], "seq": 2}])
            assert (status, answer["acked"]) == (200, [sales[0]["id"]])
            await second.recorder.async_flush()
            assert second.ledger_rows(sales[0]["id"]) == 1
            assert second.hub.states.is_state("slot.lobby_1_a1", "6")
        finally:
            await agent.stop()
            await second.stop()
    finally:
        if not agent._closed:
            await agent.stop()


def test_an_http_hub_url_selects_the_http_agent(tmp_path: Path) -> None:
    from vendhub.machine.agent_config import build_agent, load_agent_config

    (tmp_path / "agent.yaml").write_text(
        "machine_id: lobby_7\nbroker: https://lobby_7:pw@hub.local:8443\nsimulated:\n  slots: 2\n"
    )
    config = load_agent_config(tmp_path)
    agent = build_agent(config).machines[0].agent
    try:
        assert isinstance(agent, HttpMachineAgent)
        assert agent.hub_url == "https://hub.local:8443"
        assert agent.password == "pw"
    finally:
        agent.outbox.close()
    (tmp_path / "agent.yaml").write_text(
        "machine_id: lobby_7\nbroker: mqtt://hub.local\nsimulated:\n  slots: 2\n"
    )
    agent = build_agent(load_agent_config(tmp_path)).machines[0].agent
    try:
        assert not isinstance(agent, HttpMachineAgent)
    finally:
        agent.outbox.close()


async def test_an_expired_token_closes_the_socket(
    http_hub: HttpHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vendhub.auth.manager import DATA_AUTH, AuthSettings
    from vendhub_integrations.mqtt import http_transport

    monkeypatch.setattr(http_transport, "TOKEN_RECHECK", 0.2)
    auth = http_hub.hub.data[DATA_AUTH]
    monkeypatch.setattr(auth, "settings", AuthSettings(machine_token_ttl=1.0))
    machine = await WsMachine(http_hub).connect()
    await adopt(http_hub, machine)
    assert machine.ws is not None
    await until(lambda: machine.ws is not None and machine.ws.closed, timeout=5)
    assert machine.ws.close_code == 1008
    await until(lambda: http_hub.hub.states.is_state("machine.lobby_1", "offline"))
    await machine.close()
