"""A hub from YAML with the API, two virtual machines, alarms and an automation; its users.

Machine ``lobby_1`` ("A") and ``kiosk_2`` ("B") sell nothing by themselves (no sales, a
step an hour), so every change in a test is the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.http.server import get_http

from .conftest import Api

CONFIGURATION = """
vendhub:
  name: Fleet API test
http:
  server_host: 127.0.0.1
  server_port: 0
simulator:
  seed: 7
  tick: 3600
  summary_interval: 0
  start: "2024-05-06T00:00:00+00:00"
  machines:
    - id: lobby_1
      name: Lobby
      location: Main lobby
      sales_per_hour: 0
      door_openings_per_day: 0
      jam_rate: 0
      failure_rate: 0
      slots:
        A1: {product: Cola, price: 150, capacity: 10}
        A2: {product: Crisps, price: 120, capacity: 8, stock: 5, par: 2}
    - id: kiosk_2
      name: Kiosk
      sales_per_hour: 0
      door_openings_per_day: 0
      jam_rate: 0
      failure_rate: 0
      slots:
        A1: {product: Cola, price: 160, capacity: 10, stock: 0}
        B1: {product: Water, price: 100, capacity: 12}
alarm:
automation: !include automations.yaml
"""

AUTOMATIONS = """
- id: restock_reminder
  alias: Restock reminder
  mode: single
  trigger:
    - platform: state
      entity_id: slot.lobby_1_a1
      to: "0"
  action:
    - service: alarm.raise
      data:
        code: restock_reminder
        machine_id: lobby_1
        message: "Lobby A1 is empty"
"""


@dataclass
class FleetApi:
    """The running hub and API, with a token per role (and the user ids)."""

    api: Api
    tokens: dict[str, str]
    user_ids: dict[str, str]

    @property
    def hub(self) -> Any:
        return self.api.hub

    async def call(self, method: str, path: str, role: str, json: Any = None) -> tuple[int, Any]:
        status, body, _ = await self.api.call(method, path, token=self.tokens[role], json=json)
        return status, body


async def start_fleet(config_dir: Path) -> Api:
    config_dir.mkdir(exist_ok=True)
    (config_dir / "configuration.yaml").write_text(textwrap.dedent(CONFIGURATION))
    (config_dir / "automations.yaml").write_text(textwrap.dedent(AUTOMATIONS))
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == [], prepared.issues
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}, report.failed
    session = aiohttp.ClientSession()
    return Api(hub, get_http(hub).url, session)


ROLES = ("admin", "operator", "technician", "viewer")


async def add_roles(api: Api, roles: tuple[str, ...] = ROLES) -> FleetApi:
    """The owner, and a user of each of ``roles``; a technician has machine lobby_1 only.

    (Each user costs two argon2 hashes, so a test asks only for the roles it needs.)
    """
    owner = (await api.onboard())["access_token"]
    tokens = {"owner": owner}
    for role in roles:
        extra = {"machine_ids": ["lobby_1"]} if role == "technician" else {}
        tokens[role] = await api.add_user(owner, f"{role}_user", role, **extra)
    user_ids = {}
    for role, token in tokens.items():
        status, me, _ = await api.call("GET", "/api/auth/me", token=token)
        assert status == 200, me
        user_ids[role] = me["user_id"]
    return FleetApi(api, tokens, user_ids)


@contextlib.asynccontextmanager
async def running_fleet(tmp_path: Path, roles: tuple[str, ...] = ()) -> AsyncIterator[FleetApi]:
    """The hub and API with the owner and users of ``roles``; stopped on leaving."""
    api = await start_fleet(tmp_path / "config")
    try:
        yield await add_roles(api, roles)
    finally:
        await api.session.close()
        await api.hub.async_stop()
