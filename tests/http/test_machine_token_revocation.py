"""A machine's access tokens stop working once its credentials are removed or replaced while
the hub runs ('vendhub machine remove', 'machine add --rotate' from another process), as its
MQTT login does; other machines' tokens keep working."""

from __future__ import annotations

import asyncio
import functools
import logging

import pytest

from vendhub.auth import manager as manager_module
from vendhub.machine.credentials import add_machine, remove_machine

from .conftest import Api
from .test_kiosk import api, machine_token  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("fast_check")


@pytest.fixture
def fast_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "CREDENTIAL_CHECK_INTERVAL", 0.1)


async def until_status(api: Api, token: str, status: int, machine_id: str) -> None:  # noqa: F811
    for _ in range(100):
        got, _, _ = await api.call("GET", f"/api/kiosk/{machine_id}", token=token)
        if got == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"GET /api/kiosk/{machine_id} never answered {status}")


async def test_a_removed_machine_loses_its_token_and_the_others_keep_theirs(
    api: Api,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    await api.onboard()
    lobby = await machine_token(api, "lobby_1")
    gym = await machine_token(api, "gym_2")
    assert (await api.call("GET", "/api/kiosk/lobby_1", token=lobby))[0] == 200

    with caplog.at_level(logging.WARNING, logger="vendhub.auth"):
        await asyncio.to_thread(remove_machine, api.hub.config_dir, "lobby_1")
        await until_status(api, lobby, 401, "lobby_1")
    status, _, _ = await api.call(
        "POST", "/api/kiosk/lobby_1/purchases", token=lobby, json={"slot": "A1", "method": "card"}
    )
    assert status == 401
    assert "The credentials of machine lobby_1 were removed or replaced" in caplog.text
    assert (await api.call("GET", "/api/kiosk/gym_2", token=gym))[0] == 200


async def test_a_rotated_password_revokes_the_old_token_and_the_new_one_signs_in(
    api: Api,  # noqa: F811 - the fixture
) -> None:
    await api.onboard()
    old = await machine_token(api, "lobby_1")
    _, password = await asyncio.to_thread(
        functools.partial(add_machine, api.hub.config_dir, "lobby_1", rotate=True)
    )
    await until_status(api, old, 401, "lobby_1")
    status, grant, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "machine", "machine_id": "lobby_1", "password": password},
    )
    assert status == 200, grant
    assert (await api.call("GET", "/api/kiosk/lobby_1", token=grant["access_token"]))[0] == 200
    assert (await api.call("GET", "/api/kiosk/lobby_1", token=old))[0] == 401
