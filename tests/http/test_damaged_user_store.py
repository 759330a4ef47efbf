"""A damaged user store (``.storage/auth`` on a worn SD card) does not reopen onboarding:
whoever reached the hub first would make themselves its owner."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from .conftest import OWNER, start_api


async def test_a_damaged_user_store_keeps_onboarding_closed_until_the_admin_decides(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = await start_api(tmp_path)
    await api.onboard()
    await api.session.close()
    await api.hub.async_stop()

    (tmp_path / ".storage" / "auth").write_text("garbage")  # the owner is gone with it
    with caplog.at_level(logging.ERROR):
        api = await start_api(tmp_path)
    try:
        [aside] = (tmp_path / ".storage").glob("auth.corrupt-*")
        assert f"The user store was damaged (kept as {aside})" in caplog.text
        status, body, _ = await api.call(
            "POST",
            "/api/onboarding",
            json={"username": "intruder", "password": "intruder password 1"},
        )
        assert status == 409, body
        assert body["error"]["code"] == "user_store_damaged"
        assert aside.name in body["error"]["message"]
        assert (await api.login("intruder", "intruder password 1"))[0] == 401
    finally:
        await api.session.close()
        await api.hub.async_stop()

    # The administrator starts over: the damaged file deleted, onboarding opens again.
    aside.unlink()
    api = await start_api(tmp_path)
    try:
        status, body, _ = await api.call("POST", "/api/onboarding", json=OWNER)
        assert status == 200, body
    finally:
        await api.session.close()
        await api.hub.async_stop()
