"""A hub serving the HTTP API on a free port, and a client that speaks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from vendhub.core.hub import Hub
from vendhub.http.server import get_http
from vendhub_integrations.http import CONFIG_SCHEMA, async_setup

OWNER = {"username": "olga", "password": "correct horse battery", "name": "Olga"}


@dataclass
class Api:
    """The running API: its hub, its base URL and one HTTP session."""

    hub: Hub
    url: str
    session: aiohttp.ClientSession

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.url + path, json=json, headers=all_headers
        ) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body, response

    async def onboard(self) -> dict[str, Any]:
        status, body, _ = await self.call("POST", "/api/onboarding", json=OWNER)
        assert status == 200, body
        return body

    async def login(self, username: str, password: str, **extra: Any) -> tuple[int, Any]:
        status, body, _ = await self.call(
            "POST",
            "/api/auth/login",
            json={"grant_type": "password", "username": username, "password": password, **extra},
        )
        return status, body

    async def add_user(self, owner_token: str, username: str, role: str, **extra: Any) -> str:
        """Create a user and return an access token of theirs."""
        password = f"{username}-secret-pw"
        status, body, _ = await self.call(
            "POST",
            "/api/users",
            token=owner_token,
            json={"username": username, "password": password, "role": role, **extra},
        )
        assert status == 201, body
        status, grant = await self.login(username, password)
        assert status == 200, grant
        return grant["access_token"]


async def start_api(tmp_path: Path, config: dict[str, Any] | None = None) -> Api:
    hub = Hub(tmp_path)
    assert await async_setup(
        hub, CONFIG_SCHEMA({"server_host": "127.0.0.1", "server_port": 0, **(config or {})})
    )
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Api(hub, get_http(hub).url, session)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    instance = await start_api(tmp_path)
    yield instance
    await instance.session.close()
    await instance.hub.async_stop()


FLEET = {
    "tick": 3600,
    "summary_interval": 0,
    "machines": [
        {
            "id": "lobby_1",
            "name": "Lobby",
            "refrigerated": True,
            "jam_rate": 0,
            "failure_rate": 0,
            "slots": {
                "A1": {"product": "Cola", "price": 150, "capacity": 10},
                "A2": {"product": "Water", "price": 120, "capacity": 10},
            },
        },
        {
            "id": "gym_2",
            "name": "Gym",
            "jam_rate": 0,
            "failure_rate": 0,
            "slots": {"A1": {"product": "Juice", "price": 200, "capacity": 8}},
        },
    ],
}


async def start_fleet_api(tmp_path: Path, *, recorder: bool = True) -> Api:
    """The API of a hub with the entity registries, a SQLite recorder (unless ``recorder``
    is False) and two simulated machines, ``lobby_1`` (slots A1 Cola, A2 Water, refrigerated)
    and ``gym_2`` (A1 Juice), whose vends go through the machine link into the ledger."""
    from vendhub.recorder.recorder import Recorder, RecorderConfig
    from vendhub.registry import async_load_registries
    from vendhub_integrations.simulator import vendhub_config_schema as simulator_schema
    from vendhub_integrations.simulator import vendhub_setup as simulator_setup

    hub = Hub(tmp_path)
    await async_load_registries(hub)
    if recorder:
        instance = Recorder(
            hub, RecorderConfig(db_url=f"sqlite:///{tmp_path / 'vendhub.db'}", commit_interval=0.1)
        )
        await instance.async_start()
        hub.data["recorder"] = instance
    assert await simulator_setup(hub=hub, config=simulator_schema()(FLEET))
    assert await async_setup(hub, CONFIG_SCHEMA({"server_host": "127.0.0.1", "server_port": 0}))
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Api(hub, get_http(hub).url, session)


async def stop_fleet_api(instance: Api) -> None:
    await instance.session.close()
    await instance.hub.async_stop()
    recorder = instance.hub.data.get("recorder")
    if recorder is not None:
        await recorder.async_stop()


@pytest.fixture
async def fleet_api(tmp_path: Path) -> AsyncIterator[Api]:
    """``start_fleet_api``: registries, a SQLite recorder, two simulated machines, the API."""
    instance = await start_fleet_api(tmp_path)
    yield instance
    await stop_fleet_api(instance)
