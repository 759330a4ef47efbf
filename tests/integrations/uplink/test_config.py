"""The ``uplink:`` block: errors that name the file and line; secrets never logged."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from tests.mosquitto import Mosquitto
from vendhub.bootstrap import async_start_hub, prepare
from vendhub_integrations.uplink.schema import CONFIG_SCHEMA, link_settings

from .conftest import MACHINE_CONFIGURATION

VENDING = """\
vendhub:
  currency: EUR
vending:
  machines:
    lobby_1:
      planogram:
        A1: {product: Cola, price: 150, capacity: 10}
      dispenser: {platform: simulator}
"""


def issues_of(folder: Path, uplink: str) -> list[str]:
    (folder / "configuration.yaml").write_text(VENDING + textwrap.dedent(uplink))
    return [str(issue) for issue in prepare(folder).issues]


def test_a_broker_url_of_another_scheme_is_refused_with_file_and_line(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, "uplink:\n  broker: http://fleet.local:8700\n")
    assert len(issues) == 1
    assert issues[0].startswith("configuration.yaml:10:")
    assert "use mqtt:// or mqtts://" in issues[0]


def test_credentials_in_the_url_and_bad_machine_ids_are_refused(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, "uplink:\n  broker: mqtt://lobby_1:s3cret@fleet.local\n")
    assert len(issues) == 1 and "not in the broker URL" in issues[0]
    assert "s3cret" not in issues[0]
    issues = issues_of(
        tmp_path, "uplink:\n  broker: mqtt://fleet.local\n  machines: [lobby_1, Lobby-2]\n"
    )
    assert len(issues) == 1 and "configuration.yaml:11:" in issues[0] and "Lobby-2" in issues[0]


def test_each_machine_gets_its_own_credentials() -> None:
    config = CONFIG_SCHEMA(
        {
            "broker": "mqtts://fleet.local",
            "password": "block-password",
            "machines": {"lobby_1": None, "lobby_2": {"password": "own-password"}},
        }
    )
    first, second = link_settings(config, ["lobby_1", "lobby_2"])
    assert (first.username, first.password, first.port) == ("lobby_1", "block-password", 8883)
    assert (second.username, second.password) == ("lobby_2", "own-password")
    assert first.tls == {"insecure": False}
    assert "password" not in repr(first)


async def test_the_password_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = Mosquitto(tmp_path / "unused").port  # nothing listens there: connecting fails
    configuration = MACHINE_CONFIGURATION.format(port=port, prefix="vendhub")
    configuration += "  username: lobby_1\n  password: !secret uplink_password\n"
    (tmp_path / "configuration.yaml").write_text(configuration)
    (tmp_path / "secrets.yaml").write_text("uplink_password: Very-Secret-42\n")
    prepared = prepare(tmp_path)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    try:
        assert report.failed == {}
        link = hub.data["uplink"][0]
        assert link.agent.password == "Very-Secret-42"
        await link.agent.stop()  # after at least one failed attempt was logged
    finally:
        await hub.async_stop()
    assert "Very-Secret-42" not in caplog.text
    assert "lobby_1" in caplog.text
