"""``/api/kiosk``: what the kiosk shows, who may call it (the machine itself, users who may
operate it), and the simulated purchase through the API: card, cash with change, cancel,
conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from vendhub.core.hub import CoreConfig, Hub
from vendhub.http.server import get_http
from vendhub.machine.credentials import CredentialStore
from vendhub_integrations.http import CONFIG_SCHEMA, async_setup

from .conftest import Api

FLEET: dict[str, Any] = {
    "tick": 3600,
    "summary_interval": 0,
    "purchase": {"approval_delay": 0.05, "dispense_time": 0, "auto_approve": False},
    "machines": [
        {
            "id": "lobby_1",
            "name": "Lobby",
            "jam_rate": 0,
            "failure_rate": 0,
            "sales_per_hour": 0,
            "slots": {
                "A1": {"product": "Cola", "price": 150, "capacity": 10},
                "A2": {"product": "Water", "price": 120, "capacity": 10, "stock": 0},
            },
        },
        {
            "id": "gym_2",
            "name": "Gym",
            "jam_rate": 0,
            "failure_rate": 0,
            "sales_per_hour": 0,
            "payment_methods": ["cash"],
            "slots": {"A1": {"product": "Juice", "price": 200, "capacity": 8}},
        },
    ],
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    from vendhub.registry import async_load_registries
    from vendhub_integrations.simulator import vendhub_config_schema, vendhub_setup

    hub = Hub(tmp_path, CoreConfig(languages=("ru", "en")))
    await async_load_registries(hub)
    assert await vendhub_setup(hub=hub, config=vendhub_config_schema()(FLEET))
    assert await async_setup(hub, CONFIG_SCHEMA({"server_host": "127.0.0.1", "server_port": 0}))
    session = aiohttp.ClientSession()
    instance = Api(hub, get_http(hub).url, session)
    yield instance
    await session.close()
    await hub.async_stop()


async def machine_token(api: Api, machine_id: str) -> str:
    _, password = await CredentialStore(api.hub).async_add_machine(machine_id)
    status, grant, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "machine", "machine_id": machine_id, "password": password},
    )
    assert status == 200, grant
    token: str = grant["access_token"]
    return token


async def test_the_kiosk_shows_products_prices_availability_and_methods(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    lobby = await machine_token(api, "lobby_1")
    status, kiosk, _ = await api.call("GET", "/api/kiosk/lobby_1", token=lobby)
    assert status == 200, kiosk
    assert kiosk["name"] == "Lobby" and kiosk["currency"] == "EUR"
    assert kiosk["languages"] == ["ru", "en"] and kiosk["default_language"] == "ru"
    assert kiosk["payment_methods"] == ["card", "qr", "cash"]
    assert kiosk["simulated"] and kiosk["purchases"] and kiosk["selling"]
    assert kiosk["purchase"] is None
    slots = {slot["code"]: slot for slot in kiosk["slots"]}
    assert slots["A1"]["available"] and not slots["A1"]["sold_out"]
    assert slots["A1"]["price"] == 150 and slots["A1"]["product"] == "Cola"
    assert slots["A2"]["sold_out"] and not slots["A2"]["available"]
    status, gym, _ = await api.call("GET", "/api/kiosk/gym_2", token=owner)
    assert status == 200 and gym["payment_methods"] == ["cash"]


async def test_a_machine_reaches_only_its_own_kiosk_and_users_need_operate(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    lobby = await machine_token(api, "lobby_1")
    for path in ("/api/kiosk/gym_2", "/api/kiosk/gym_2/purchases/" + "0" * 32):
        status, body, _ = await api.call("GET", path, token=lobby)
        assert status == 404, body
    status, _, _ = await api.call(
        "POST", "/api/kiosk/gym_2/purchases", token=lobby, json={"slot": "A1", "method": "cash"}
    )
    assert status == 404
    viewer = await api.add_user(owner, "vera", "viewer")
    status, body, _ = await api.call("GET", "/api/kiosk/lobby_1", token=viewer)
    assert status == 403, body
    tech = await api.add_user(owner, "tom", "technician", machine_ids=["gym_2"])
    assert (await api.call("GET", "/api/kiosk/lobby_1", token=tech))[0] == 404
    assert (await api.call("GET", "/api/kiosk/gym_2", token=tech))[0] == 200
    # A machine's token still reaches none of the user APIs.
    assert (await api.call("GET", "/api/machines", token=lobby))[0] == 403


async def until(api: Api, token: str, path: str, *states: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            status, purchase, _ = await api.call("GET", path, token=token)
            assert status == 200, purchase
            if purchase["state"] in states:
                return purchase
            await asyncio.sleep(0.02)


async def test_a_card_purchase_through_the_api(api: Api) -> None:
    lobby = await machine_token(api, "lobby_1")
    status, purchase, _ = await api.call(
        "POST", "/api/kiosk/lobby_1/purchases", token=lobby, json={"slot": "a1", "method": "card"}
    )
    assert status == 201, purchase
    assert purchase["state"] == "awaiting_payment" and purchase["slot"] == "A1"
    path = f"/api/kiosk/lobby_1/purchases/{purchase['id']}"
    status, kiosk, _ = await api.call("GET", "/api/kiosk/lobby_1", token=lobby)
    assert kiosk["purchase"]["id"] == purchase["id"]  # to resume after a reload
    status, body, _ = await api.call("POST", path + "/cash", token=lobby, json={"amount": 100})
    assert status == 409 and "card" in body["error"]["message"]
    status, paid, _ = await api.call("POST", path + "/pay", token=lobby, json={})
    assert status == 200 and paid["state"] in ("authorized", "dispensing", "completed")
    done = await until(api, lobby, path, "completed", "failed")
    assert done["state"] == "completed" and done["vend"]["outcome"] == "completed"
    status, body, _ = await api.call("POST", path + "/pay", token=lobby, json={})
    assert status == 409
    status, again, _ = await api.call("POST", path + "/cancel", token=lobby, json={})
    assert status == 200 and again["state"] == "completed"  # finished: unchanged
    assert api.hub.states.get("slot.lobby_1_a1").state == "9"  # type: ignore[union-attr]


async def test_cash_with_change_and_a_cancel_through_the_api(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    start = {"slot": "A1", "method": "cash"}
    status, purchase, _ = await api.call(
        "POST", "/api/kiosk/gym_2/purchases", token=owner, json=start
    )
    assert status == 201, purchase
    path = f"/api/kiosk/gym_2/purchases/{purchase['id']}"
    status, _, _ = await api.call("POST", path + "/pay", token=owner, json={})
    assert status == 409  # cash is inserted, not approved
    status, partly, _ = await api.call("POST", path + "/cash", token=owner, json={"amount": 100})
    assert status == 200 and (partly["credit"], partly["due"]) == (100, 100)
    status, cancelled, _ = await api.call("POST", path + "/cancel", token=owner, json={})
    assert status == 200 and cancelled["state"] == "cancelled"
    assert cancelled["refunded"] and cancelled["refund_amount"] == 100

    status, purchase, _ = await api.call(
        "POST", "/api/kiosk/gym_2/purchases", token=owner, json=start
    )
    path = f"/api/kiosk/gym_2/purchases/{purchase['id']}"
    status, paid, _ = await api.call("POST", path + "/cash", token=owner, json={"amount": 500})
    assert status == 200 and paid["change"] == 300
    done = await until(api, owner, path, "completed", "failed")
    assert done["state"] == "completed" and done["change"] == 300


async def test_conflicts_and_refusals(api: Api) -> None:
    lobby = await machine_token(api, "lobby_1")
    owner = (await api.onboard())["access_token"]
    cases = [
        ("lobby_1", {"slot": "A2", "method": "card"}, 409, "sold_out"),
        ("lobby_1", {"slot": "Z9", "method": "card"}, 404, "not_found"),
        ("gym_2", {"slot": "A1", "method": "card"}, 409, "method_not_accepted"),
    ]
    for machine_id, data, expected, code in cases:
        token = lobby if machine_id == "lobby_1" else owner
        status, body, _ = await api.call(
            "POST", f"/api/kiosk/{machine_id}/purchases", token=token, json=data
        )
        assert (status, body["error"]["code"]) == (expected, code), (data, body)
    status, body, _ = await api.call(
        "POST",
        "/api/kiosk/lobby_1/purchases",
        token=lobby,
        json={"slot": "A1", "method": "bitcoin"},
    )
    assert status == 400
    status, body, _ = await api.call("GET", "/api/kiosk/lobby_1/purchases/" + "0" * 32, token=lobby)
    assert status == 404
    # A machine that does not sell now (service mode) starts no purchase.
    await api.hub.services.async_call(
        "simulator", "set_config", {"machine_id": "lobby_1", "mode": "service"}, blocking=True
    )
    status, kiosk, _ = await api.call("GET", "/api/kiosk/lobby_1", token=lobby)
    assert kiosk["selling"] is False and not any(s["available"] for s in kiosk["slots"])
    status, body, _ = await api.call(
        "POST", "/api/kiosk/lobby_1/purchases", token=lobby, json={"slot": "A1", "method": "card"}
    )
    assert (status, body["error"]["code"]) == (409, "not_selling")
