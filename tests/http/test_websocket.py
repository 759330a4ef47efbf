"""The WebSocket API: sign-in, every command, filters, scoping, service calls, slow clients."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import voluptuous as vol
from aiohttp import WSMsgType

from vendhub.auth.manager import get_auth
from vendhub.core.services import ServiceCall
from vendhub.http.websocket import WebSocketSettings, websocket_manager
from vendhub.machine.credentials import CredentialStore
from vendhub.vending.session import VendOutcome, VendRefused

from .conftest import OWNER, Api, start_api

WS = "/api/websocket"


async def connect(
    api: Api, token: str | None = None, **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket to the API; signed in with ``token`` when given."""
    ws = await api.session.ws_connect(api.url + WS, **kwargs)
    if token is not None:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "auth_required"
        await ws.send_json({"type": "auth", "access_token": token})
        answer = await ws.receive_json(timeout=5)
        assert answer["type"] == "auth_ok", answer
    return ws


def close_code(message: aiohttp.WSMessage, ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code the server closed with: from its close frame, else what the client saw."""
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), message
    return int(message.data) if message.type is WSMsgType.CLOSE else ws.close_code


class Client:
    """A signed-in connection that numbers its messages and sorts results from events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: dict[int, list[Any]] = {}
        self.results: dict[int, dict[str, Any]] = {}

    @classmethod
    async def open(cls, api: Api, token: str) -> Client:
        return cls(await connect(api, token))

    async def _pump(self) -> None:
        message = await self.ws.receive(timeout=5)
        assert message.type is WSMsgType.TEXT, message
        value = json.loads(message.data)
        for item in value if isinstance(value, list) else [value]:
            if item["type"] == "event":
                self.events.setdefault(item["id"], []).append(item["event"])
            else:
                self.results[item["id"]] = item

    async def send(self, **message: Any) -> int:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, **message})
        return self.next_id

    async def result(self, msg_id: int) -> dict[str, Any]:
        while msg_id not in self.results:
            await self._pump()
        return self.results.pop(msg_id)

    async def call(self, **message: Any) -> dict[str, Any]:
        return await self.result(await self.send(**message))

    async def ok(self, **message: Any) -> Any:
        answer = await self.call(**message)
        assert answer["success"], answer
        return answer["result"]

    async def event(self, subscription: int) -> Any:
        while not self.events.get(subscription):
            await self._pump()
        return self.events[subscription].pop(0)

    async def no_event(self, subscription: int) -> None:
        """No event arrives for ``subscription`` (checked with a ping round trip)."""
        pong_id = await self.send(type="ping")
        await self.result(pong_id)
        assert not self.events.get(subscription), self.events[subscription]

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def owner(api: Api) -> str:
    return (await api.onboard())["access_token"]


def add_fleet(api: Api) -> None:
    states = api.hub.states
    for machine in ("lobby_1", "lobby_2"):
        states.async_set(f"machine.{machine}", "online", {"mode": "normal"})
        states.async_set(f"sensor.{machine}_temperature", "4.5", {"unit_of_measurement": "°C"})
        states.async_set(f"slot.{machine}_a1", "7", {"machine_id": machine, "price": 150})
    states.async_set("sensor.fleet_sales_today", "42")


# ---- sign-in ------------------------------------------------------------------------------------


async def test_token_handshake_then_ping(api: Api, owner: str) -> None:
    ws = await api.session.ws_connect(api.url + WS)
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "auth_required" and hello["version"] and hello["protocol"] == 1
    await ws.send_json({"type": "auth", "access_token": owner})
    assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
    await ws.send_json({"id": 1, "type": "ping"})
    assert await ws.receive_json(timeout=5) == {"id": 1, "type": "pong"}
    await ws.close()


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"type": "auth", "access_token": "not.a.token"}),
        json.dumps({"type": "auth"}),
        json.dumps({"id": 1, "type": "ping"}),
        "not json",
        "[1, 2]",
        b"\x00binary",
    ],
)
async def test_a_bad_first_message_gets_auth_invalid_and_a_close(
    api: Api, owner: str, first: str | bytes
) -> None:
    ws = await api.session.ws_connect(api.url + WS)
    assert (await ws.receive_json(timeout=5))["type"] == "auth_required"
    if isinstance(first, bytes):
        await ws.send_bytes(first)
    else:
        await ws.send_str(first)
    answer = await ws.receive_json(timeout=5)
    assert answer["type"] == "auth_invalid" and answer["message"]
    assert close_code(await ws.receive(timeout=5), ws) == 1008


async def test_no_auth_message_in_time_closes(api: Api, owner: str) -> None:
    websocket_manager(api.hub).settings = WebSocketSettings(auth_timeout=0.2)
    ws = await api.session.ws_connect(api.url + WS)
    assert (await ws.receive_json(timeout=5))["type"] == "auth_required"
    answer = await ws.receive_json(timeout=5)
    assert answer["type"] == "auth_invalid" and "within" in answer["message"]
    await ws.receive(timeout=5)
    assert ws.closed


async def test_a_session_cookie_signs_in_at_once_but_not_from_another_origin(api: Api) -> None:
    await api.onboard()
    status, _ = await api.login(OWNER["username"], OWNER["password"], session=True)
    assert status == 200
    ws = await api.session.ws_connect(api.url + WS)
    assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
    await ws.send_json({"id": 1, "type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    await ws.close()
    same_site = await api.session.ws_connect(api.url + WS, origin=api.url)
    assert (await same_site.receive_json(timeout=5))["type"] == "auth_ok"
    await same_site.close()
    cross_site = await api.session.ws_connect(api.url + WS, origin="https://evil.example")
    assert (await cross_site.receive_json(timeout=5))["type"] == "auth_required"
    await cross_site.close()


async def test_a_bearer_header_on_the_upgrade_signs_in_at_once(api: Api, owner: str) -> None:
    ws = await api.session.ws_connect(api.url + WS, headers={"Authorization": f"Bearer {owner}"})
    assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
    await ws.close()


async def test_a_plain_get_is_401_without_a_token_and_426_with_one(api: Api, owner: str) -> None:
    status, body, _ = await api.call("GET", WS)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, _ = await api.call("GET", WS, token="not.a.token")
    assert status == 401
    status, body, response = await api.call("GET", WS, token=owner)
    assert status == 426 and body["error"]["code"] == "upgrade_required"
    assert response.headers["Upgrade"] == "websocket"


async def test_machines_are_refused(api: Api, owner: str) -> None:
    _, password = await CredentialStore(api.hub).async_add_machine("lobby_1")
    status, grant, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "machine", "machine_id": "lobby_1", "password": password},
    )
    assert status == 200
    ws = await api.session.ws_connect(api.url + WS)
    await ws.receive_json(timeout=5)
    await ws.send_json({"type": "auth", "access_token": grant["access_token"]})
    answer = await ws.receive_json(timeout=5)
    assert answer["type"] == "auth_invalid" and "machine" in answer["message"]
    headers = {"Authorization": f"Bearer {grant['access_token']}"}
    ws = await api.session.ws_connect(api.url + WS, headers=headers)
    assert (await ws.receive_json(timeout=5))["type"] == "auth_invalid"
    status, _, _ = await api.call("GET", WS, token=grant["access_token"])
    assert status == 403


async def test_signing_out_closes_the_connection(api: Api, owner: str) -> None:
    websocket_manager(api.hub).settings = WebSocketSettings(recheck_seconds=0.1)
    client = await Client.open(api, owner)
    await client.call(type="ping")
    status, _, _ = await api.call("POST", "/api/auth/logout", token=owner)
    assert status == 200
    assert close_code(await client.ws.receive(timeout=5), client.ws) == 1008


async def test_the_hub_stopping_closes_connections(api: Api, owner: str) -> None:
    client = await Client.open(api, owner)
    await client.call(type="ping")
    await api.hub.async_stop()
    assert close_code(await client.ws.receive(timeout=5), client.ws) == 1001
    assert not websocket_manager(api.hub).connections


# ---- commands ----------------------------------------------------------------------------------


async def test_subscribe_states_with_filters_and_unsubscribe(api: Api, owner: str) -> None:
    add_fleet(api)
    client = await Client.open(api, owner)
    every = await client.send(type="subscribe_states")
    assert (await client.result(every))["success"]
    temperatures = await client.send(type="subscribe_states", entity_id="sensor.*_temperature")
    await client.result(temperatures)
    lobby_2 = await client.send(type="subscribe_states", machine_id=["lobby_2"])
    await client.result(lobby_2)
    both = await client.send(
        type="subscribe_states", entity_id=["slot.*", "machine.*"], machine_id="lobby_1"
    )
    await client.result(both)

    api.hub.states.async_set("sensor.lobby_1_temperature", "5.0", {"unit_of_measurement": "°C"})
    api.hub.states.async_set("slot.lobby_2_a1", "6", {"machine_id": "lobby_2", "price": 150})
    api.hub.states.async_set("slot.lobby_1_a1", "6", {"machine_id": "lobby_1", "price": 150})
    api.hub.states.async_remove("sensor.fleet_sales_today")

    seen = [await client.event(every) for _ in range(4)]
    assert [change["entity_id"] for change in seen] == [
        "sensor.lobby_1_temperature",
        "slot.lobby_2_a1",
        "slot.lobby_1_a1",
        "sensor.fleet_sales_today",
    ]
    assert seen[-1]["new_state"] is None
    change = await client.event(temperatures)
    assert change["entity_id"] == "sensor.lobby_1_temperature"
    assert change["new_state"]["state"] == "5.0"
    assert change["new_state"]["attributes"] == {"unit_of_measurement": "°C"}
    assert set(change["new_state"]) == {
        "entity_id", "state", "attributes", "last_changed", "last_updated", "context",
    }  # fmt: skip
    assert (await client.event(lobby_2))["entity_id"] == "slot.lobby_2_a1"
    assert (await client.event(both))["entity_id"] == "slot.lobby_1_a1"
    await client.no_event(temperatures)
    await client.no_event(lobby_2)
    await client.no_event(both)

    assert (await client.call(type="unsubscribe", subscription=temperatures))["success"]
    api.hub.states.async_set("sensor.lobby_1_temperature", "5.5")
    assert (await client.event(every))["entity_id"] == "sensor.lobby_1_temperature"
    await client.no_event(temperatures)
    answer = await client.call(type="unsubscribe", subscription=temperatures)
    assert answer["error"]["code"] == "not_found"
    await client.close()


async def test_subscribe_events_by_type_and_filters(api: Api, owner: str) -> None:
    client = await Client.open(api, owner)
    vends = await client.send(type="subscribe_events", event_type="vend_completed")
    await client.result(vends)
    anything = await client.send(type="subscribe_events")
    await client.result(anything)
    lobby_1 = await client.send(
        type="subscribe_events", event_type=["vend_completed", "door_opened"], machine_id="lobby_1"
    )
    await client.result(lobby_1)
    slots = await client.send(type="subscribe_events", entity_id="slot.lobby_*")
    await client.result(slots)

    api.hub.bus.async_fire("vend_completed", {"machine_id": "lobby_2", "slot": "A1", "price": 150})
    api.hub.bus.async_fire("door_opened", {"machine_id": "lobby_1"})
    api.hub.bus.async_fire("stock_counted", {"entity_id": "slot.lobby_1_a1", "count": 3})

    event = await client.event(vends)
    assert event["event_type"] == "vend_completed"
    assert event["data"] == {"machine_id": "lobby_2", "slot": "A1", "price": 150}
    assert set(event) == {"event_type", "data", "origin", "time_fired", "context"}
    assert [(await client.event(anything))["event_type"] for _ in range(3)] == [
        "vend_completed",
        "door_opened",
        "stock_counted",
    ]
    assert (await client.event(lobby_1))["event_type"] == "door_opened"
    assert (await client.event(slots))["data"]["count"] == 3
    await client.no_event(vends)
    await client.no_event(lobby_1)
    await client.no_event(slots)
    await client.close()


async def test_get_states_with_filters(api: Api, owner: str) -> None:
    add_fleet(api)
    client = await Client.open(api, owner)
    states = await client.ok(type="get_states")
    assert len(states) == len(api.hub.states) == 7
    assert states[0] == json.loads(json.dumps(api.hub.states.get("machine.lobby_1").as_dict()))
    slots = await client.ok(type="get_states", entity_id="slot.*")
    assert sorted(s["entity_id"] for s in slots) == ["slot.lobby_1_a1", "slot.lobby_2_a1"]
    lobby_2 = await client.ok(type="get_states", machine_id="lobby_2")
    assert sorted(s["entity_id"] for s in lobby_2) == [
        "machine.lobby_2",
        "sensor.lobby_2_temperature",
        "slot.lobby_2_a1",
    ]
    exact = await client.ok(type="get_states", entity_id=["sensor.fleet_sales_today"])
    assert [s["state"] for s in exact] == ["42"]
    api.hub.states.async_set("sensor.fleet_sales_today", "43")
    exact = await client.ok(type="get_states", entity_id="sensor.fleet_sales_today")
    assert [s["state"] for s in exact] == ["43"]
    await client.close()


async def test_a_technician_sees_only_their_machines(api: Api, owner: str) -> None:
    add_fleet(api)
    token = await api.add_user(owner, "tess", "technician", machine_ids=["lobby_1"])
    client = await Client.open(api, token)
    states = await client.ok(type="get_states")
    assert sorted(s["entity_id"] for s in states) == [
        "machine.lobby_1",
        "sensor.lobby_1_temperature",
        "slot.lobby_1_a1",
    ]
    answer = await client.call(type="get_states", machine_id="lobby_2")
    assert answer["error"]["code"] == "not_found"
    answer = await client.call(type="subscribe_states", machine_id=["lobby_1", "lobby_2"])
    assert answer["error"]["code"] == "not_found"

    all_states = await client.send(type="subscribe_states")
    await client.result(all_states)
    all_events = await client.send(type="subscribe_events")
    await client.result(all_events)
    api.hub.states.async_set("slot.lobby_2_a1", "1", {"machine_id": "lobby_2"})
    api.hub.states.async_set("sensor.fleet_sales_today", "50")
    api.hub.bus.async_fire("vend_completed", {"machine_id": "lobby_2"})
    api.hub.bus.async_fire("hub_note", {"text": "fleet-wide"})
    api.hub.states.async_set("slot.lobby_1_a1", "1", {"machine_id": "lobby_1"})
    api.hub.bus.async_fire("vend_completed", {"machine_id": "lobby_1"})
    assert (await client.event(all_states))["entity_id"] == "slot.lobby_1_a1"
    first = await client.event(all_events)
    assert first["event_type"] == "state_changed"
    assert first["data"]["entity_id"] == "slot.lobby_1_a1"
    second = await client.event(all_events)
    assert second["event_type"] == "vend_completed" and second["data"]["machine_id"] == "lobby_1"
    await client.no_event(all_states)
    await client.no_event(all_events)
    await client.close()


def register_services(api: Api) -> list[ServiceCall]:
    calls: list[ServiceCall] = []

    async def restock(call: ServiceCall) -> dict[str, Any]:
        calls.append(call)
        return {"restocked": call.data["machine_id"], "slots": 12}

    def reload(call: ServiceCall) -> None:
        calls.append(call)

    def broken(call: ServiceCall) -> None:
        raise RuntimeError("the dispenser board is on fire")

    services = api.hub.services
    services.async_register(
        "fleet",
        "restock",
        restock,
        vol.Schema({vol.Required("machine_id"): str, vol.Optional("full", default=True): bool}),
    )
    services.async_register("fleet", "reload", reload)
    services.async_register("fleet", "broken", broken, {vol.Optional("machine_id"): str})

    def sold_out(call: ServiceCall) -> None:
        raise VendRefused(VendOutcome.sold_out, "slot A1 of lobby_1 is sold out")

    services.async_register("fleet", "sold_out", sold_out)
    return calls


async def test_call_service_runs_with_the_callers_context(api: Api, owner: str) -> None:
    calls = register_services(api)
    client = await Client.open(api, owner)
    result = await client.ok(
        type="call_service",
        domain="fleet",
        service="restock",
        service_data={"machine_id": "lobby_1"},
    )
    assert result["response"] == {"restocked": "lobby_1", "slots": 12}
    olga = next(user for user in get_auth(api.hub).users if user.username == "olga")
    assert calls[0].context.user_id == f"user:{olga.id}"
    assert result["context"] == calls[0].context.as_dict()
    assert calls[0].data == {"machine_id": "lobby_1", "full": True}
    assert (await client.ok(type="call_service", domain="fleet", service="reload"))[
        "response"
    ] is None

    answer = await client.call(type="call_service", domain="fleet", service="nothing")
    assert answer["error"]["code"] == "not_found"
    answer = await client.call(
        type="call_service", domain="fleet", service="restock", service_data={"full": "x"}
    )
    assert (
        answer["error"]["code"] == "invalid_service_data"
        and "machine_id" in answer["error"]["message"]
    )
    answer = await client.call(type="call_service", domain="fleet", service="broken")
    assert answer["error"]["code"] == "service_error" and "on fire" in answer["error"]["message"]
    # A refusal carries its code, as REST gives it, for a client to branch on.
    answer = await client.call(type="call_service", domain="fleet", service="sold_out")
    assert answer["error"] == {
        "code": "service_error",
        "message": "slot A1 of lobby_1 is sold out",
        "details": {"outcome": "sold_out"},
    }
    answer = await client.call(type="call_service", domain="Fleet!", service="reload")
    assert answer["error"]["code"] == "invalid_format"
    await client.close()


async def test_call_service_permissions(api: Api, owner: str) -> None:
    calls = register_services(api)
    viewer = await Client.open(api, await api.add_user(owner, "vic", "viewer"))
    answer = await viewer.call(
        type="call_service",
        domain="fleet",
        service="restock",
        service_data={"machine_id": "lobby_1"},
    )
    assert answer["error"]["code"] == "unauthorized"

    # A service the allow-list does not name (vendhub.http.service_permissions) is for
    # manage_hub only, even on the technician's own machine: these are new services.
    # What a technician may call: test_websocket_permissions.py.
    tech = await Client.open(
        api, await api.add_user(owner, "tess", "technician", machine_ids=["lobby_1"])
    )
    for service, data in (
        ("restock", {"machine_id": "lobby_1"}),
        ("restock", {"machine_id": "lobby_2"}),
        ("reload", {}),
        ("reload", {"machine_id": "lobby_1"}),
    ):
        answer = await tech.call(
            type="call_service", domain="fleet", service=service, service_data=data
        )
        assert answer["error"]["code"] == "unauthorized", (service, data, answer)
        assert "needs manage_hub" in answer["error"]["message"], answer
    assert calls == []
    await viewer.close()
    await tech.close()


async def test_a_timeout_inside_a_service_is_not_the_calls_limit(api: Api, owner: str) -> None:
    """A TimeoutError from a wait inside the service is answered with its own message (or
    that the service timed out), not as the connection's call_timeout running out; only
    when that limit runs out does the answer name it."""

    async def own_wait(call: ServiceCall) -> None:
        async with asyncio.timeout(0.05):  # a bare TimeoutError, as asyncio raises it
            await asyncio.sleep(10)

    async def machine_silent(call: ServiceCall) -> None:
        raise TimeoutError("lobby_1 did not answer restock within 0.5 s")

    async def slow(call: ServiceCall) -> None:
        await asyncio.sleep(10)

    services = api.hub.services
    services.async_register("fleet", "own_wait", own_wait)
    services.async_register("fleet", "machine_silent", machine_silent)
    services.async_register("fleet", "slow", slow)
    manager = websocket_manager(api.hub)
    manager.settings = WebSocketSettings(call_timeout=30)
    client = await Client.open(api, owner)
    answer = await client.call(type="call_service", domain="fleet", service="own_wait")
    assert answer["error"] == {"code": "timeout", "message": "fleet.own_wait timed out"}
    answer = await client.call(type="call_service", domain="fleet", service="machine_silent")
    assert answer["error"] == {
        "code": "timeout",
        "message": "lobby_1 did not answer restock within 0.5 s",
    }
    await client.close()
    manager.settings = WebSocketSettings(call_timeout=0.2)  # for connections opened from now
    client = await Client.open(api, owner)
    answer = await client.call(type="call_service", domain="fleet", service="slow")
    assert answer["error"] == {
        "code": "timeout",
        "message": "fleet.slow did not finish within 0.2 s",
    }
    await client.close()


# ---- bad input ---------------------------------------------------------------------------------


async def test_bad_messages_are_answered_and_the_connection_stays(api: Api, owner: str) -> None:
    client = await Client.open(api, owner)
    ws = client.ws

    async def error_of(frame: str | bytes) -> dict[str, Any]:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        answer = await ws.receive_json(timeout=5)
        assert answer["type"] == "result" and answer["success"] is False, answer
        return answer

    cases: list[tuple[str | bytes, str, str]] = [
        ("{nope", "invalid_json", "not valid JSON"),
        ('{"id": 1, "id": 2, "type": "ping"}', "invalid_json", "twice"),
        ("[1]", "invalid_format", "object"),
        ("42", "invalid_format", "object"),
        (json.dumps({"type": "ping"}), "invalid_format", '"id"'),
        (json.dumps({"id": "1", "type": "ping"}), "invalid_format", '"id"'),
        (json.dumps({"id": True, "type": "ping"}), "invalid_format", '"id"'),
        (json.dumps({"id": -4, "type": "ping"}), "invalid_format", '"id"'),
        (json.dumps({"id": 10, "type": 5}), "invalid_format", '"type"'),
        (json.dumps({"id": 11, "type": "launch_rockets"}), "unknown_command", "launch_rockets"),
        (json.dumps({"id": 11, "type": "ping"}), "id_reuse", "11"),
        (
            json.dumps({"id": 12, "type": "subscribe_states", "entity_id": 7}),
            "invalid_format",
            "entity_id",
        ),
        (json.dumps({"id": 13, "type": "unsubscribe"}), "invalid_format", "subscription"),
        (json.dumps({"id": 14, "type": "get_states", "colour": "red"}), "invalid_format", "colour"),
        (
            json.dumps(
                {
                    "id": 15,
                    "type": "call_service",
                    "domain": "x",
                    "service": "y",
                    "service_data": [1],
                }
            ),
            "invalid_format",
            "service_data",
        ),
        (json.dumps({"id": 16, "type": "ping", "pad": "x" * 70_000}), "message_too_large", "65536"),
        (b"\x01\x02", "invalid_format", "binary"),
    ]
    for frame, code, words in cases:
        answer = await error_of(frame)
        assert answer["error"]["code"] == code, (frame[:80], answer)
        assert words in answer["error"]["message"], (frame[:80], answer)
    await ws.send_json({"id": 100, "type": "ping"})
    assert await ws.receive_json(timeout=5) == {"id": 100, "type": "pong"}
    await client.close()


async def test_a_frame_over_the_hard_limit_closes_with_1009(api: Api, owner: str) -> None:
    ws = await connect(api, owner)
    await ws.send_str("x" * (2 * 1024 * 1024))
    assert close_code(await ws.receive(timeout=5), ws) == 1009


async def test_coalesced_messages_come_as_arrays(api: Api, owner: str) -> None:
    client = await Client.open(api, owner)
    await client.ok(type="supported_features", features={"coalesce_messages": 1})
    sub = await client.send(type="subscribe_states")
    await client.result(sub)
    for value in range(50):
        api.hub.states.async_set("sensor.counter", value)
    frames = 0
    arrays = 0
    while len(client.events.get(sub, [])) < 50:
        message = await client.ws.receive(timeout=5)
        frames += 1
        value = json.loads(message.data)
        arrays += isinstance(value, list)
        for item in value if isinstance(value, list) else [value]:
            client.events.setdefault(item["id"], []).append(item["event"])
    assert [e["new_state"]["state"] for e in client.events[sub]] == [str(v) for v in range(50)]
    assert arrays >= 1 and frames < 50
    await client.close()


async def test_one_bus_listener_serves_every_client(api: Api, owner: str) -> None:
    before = api.hub.bus.async_listeners().get("state_changed", 0)
    clients = [await Client.open(api, owner) for _ in range(5)]
    for client in clients:
        await client.ok(type="subscribe_states")
        await client.ok(type="subscribe_states", entity_id="sensor.*")
    assert api.hub.bus.async_listeners().get("state_changed", 0) == before + 1
    api.hub.states.async_set("sensor.shared", "1")
    for client in clients:
        first, second = await client.event(1), await client.event(2)
        assert first == second
    for client in clients:
        await client.close()
    for _ in range(50):
        if not websocket_manager(api.hub).connections:
            break
        await asyncio.sleep(0.02)
    assert api.hub.bus.async_listeners().get("state_changed", 0) == before


# ---- slow clients --------------------------------------------------------------------------------


async def _fill(api: Api, count: int, size: int) -> float:
    """Set ``count`` big states; returns the longest time one set took (the hub never waits)."""
    loop = asyncio.get_running_loop()
    longest = 0.0
    padding = "x" * size
    for value in range(count):
        started = loop.time()
        api.hub.states.async_set("sensor.big", value, {"padding": padding})
        longest = max(longest, loop.time() - started)
        if value % 10 == 0:
            await asyncio.sleep(0.002)
    return longest


async def _wait_dropped(api: Api, expected: int = 1) -> None:
    manager = websocket_manager(api.hub)
    for _ in range(250):
        if manager.dropped_slow >= expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"dropped {manager.dropped_slow}, expected {expected}")


async def test_a_client_that_never_reads_is_dropped_and_others_go_on(
    api: Api, owner: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = websocket_manager(api.hub)
    manager.settings = WebSocketSettings(max_pending=200, peak_pending=100, peak_seconds=30)
    slow = await Client.open(api, owner)
    await slow.ok(type="subscribe_states")
    reader = await Client.open(api, owner)
    sub = await reader.send(type="subscribe_states")
    await reader.result(sub)
    received = 0

    async def read_all() -> None:
        nonlocal received
        while received < 600:
            await reader.event(sub)
            received += 1

    reading = asyncio.create_task(read_all())
    longest = await _fill(api, 600, 64 * 1024)
    await _wait_dropped(api)
    await asyncio.wait_for(reading, 20)
    assert received == 600
    assert longest < 0.05
    assert len(manager.connections) == 1
    assert "dropped: it reads too slowly" in caplog.text and "200 messages" in caplog.text
    # The hub and the other client go on.
    api.hub.states.async_set("sensor.after", "1")
    assert (await reader.event(sub))["entity_id"] == "sensor.after"
    assert (await reader.call(type="ping"))["type"] == "pong"
    fresh = await Client.open(api, owner)
    assert (await fresh.call(type="ping"))["type"] == "pong"
    await reader.close()
    await fresh.close()
    await slow.ws.close()


async def test_a_client_behind_for_too_long_is_dropped(api: Api, owner: str) -> None:
    manager = websocket_manager(api.hub)
    manager.settings = WebSocketSettings(max_pending=100_000, peak_pending=20, peak_seconds=0.3)
    slow = await Client.open(api, owner)
    await slow.ok(type="subscribe_states")
    await _fill(api, 400, 64 * 1024)
    await _wait_dropped(api)
    assert not manager.connections
    message = await slow.ws.receive(timeout=5)
    while message.type is WSMsgType.TEXT:
        message = await slow.ws.receive(timeout=5)
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)


async def test_no_error_is_logged_by_a_normal_session(
    api: Api, owner: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="vendhub.http.websocket")
    add_fleet(api)
    client = await Client.open(api, owner)
    await client.ok(type="subscribe_states")
    await client.ok(type="get_states")
    await client.close()
    await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_pushes_over_tls(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vendhub", "certs", "generate", "--config", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    api = await start_api(
        tmp_path, {"ssl_certificate": "certs/vendhub.crt", "ssl_key": "certs/vendhub.key"}
    )
    await api.session.close()
    trusted = ssl.create_default_context(cafile=str(tmp_path / "certs" / "vendhub.crt"))
    api.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted))
    try:
        assert api.url.startswith("https://")
        token = (await api.onboard())["access_token"]
        client = await Client.open(api, token)
        sub = await client.send(type="subscribe_states")
        await client.result(sub)
        for value in range(300):
            api.hub.states.async_set("sensor.tls", value, {"padding": "x" * 2000})
        states = [(await client.event(sub))["new_state"]["state"] for _ in range(300)]
        assert states == [str(value) for value in range(300)]
        assert (await client.call(type="ping"))["type"] == "pong"
        await client.close()
    finally:
        await api.session.close()
        await api.hub.async_stop()
