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
