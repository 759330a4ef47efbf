"""The MQTT link as the hub loads it: manifest, configuration, order after the recorder, unload."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import voluptuous as vol

from tests.mosquitto import Mosquitto
from vendhub.core import Hub
from vendhub.helpers.entity_platform import async_entities
from vendhub.plugins.discovery import discover_integrations
from vendhub.plugins.manager import IntegrationManager
from vendhub.plugins.plan import plan_integrations
from vendhub_integrations.mqtt import vendhub_config_schema
from vendhub_integrations.mqtt.schema import default_client_id

from .conftest import MachineFactory, adopted_machine, start_link, until


def test_the_configuration_has_defaults_and_a_stable_client_id() -> None:
    schema = vendhub_config_schema()
    config = schema({})
    assert "broker" not in config  # no broker: the embedded one (test_embedded_broker.py)
    assert schema({"broker": {}})["broker"] == {"host": "127.0.0.1", "port": 1883}
    assert config["keepalive"] == 30
    assert config["topic_prefix"] == "vendhub"
    assert config["auto_adopt"] is False
    assert config["command_timeout"] == 10.0
    assert config["client_id"].startswith("vendhub-hub-")
    assert schema({})["client_id"] == config["client_id"] == default_client_id(config)
    other = schema({"broker": {"port": 1884}})
    assert other["client_id"] != config["client_id"]
    assert schema({"client_id": "hub-a"})["client_id"] == "hub-a"
    tls = schema({"broker": {"tls": {"ca_certs": "/etc/ca.pem"}, "username": "hub"}})
    assert tls["broker"]["tls"] == {"ca_certs": "/etc/ca.pem", "insecure": False}
    assert schema({"command_timeout": "1.5s"})["command_timeout"] == 1.5

    for bad, message in (
        ({"topic_prefix": "vendhub/#"}, "expected topic levels"),
        ({"broker": {"port": 70000}}, "port"),
        ({"broker": {"password": "x"}}, "a password needs a username"),
        ({"keepalive": 2}, "keepalive must be from 5 to 65535 seconds"),
        ({"command_timeout": 0}, "expected a positive duration"),
    ):
        with pytest.raises(vol.Invalid, match=message):
            schema(bad)


async def test_the_hub_loads_it_after_the_recorder_and_unloads_it_cleanly(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = {
        "mqtt": {"broker": {"port": broker.port}, "topic_prefix": prefix},
        "recorder": {"db_url": f"sqlite:///{tmp_path / 'vendhub.db'}", "commit_interval": 1},
    }
    plan = plan_integrations(raw, await hub.async_add_executor_job(discover_integrations, None))
    assert plan.issues == []
    assert plan.waits_for["mqtt"] == {"recorder"}
    manager = IntegrationManager(hub, plan)
    with caplog.at_level(logging.WARNING):
        report = await manager.async_setup_all()
    assert report.loaded == ["recorder", "mqtt"], report.failed
    assert not any("No recorder" in record.getMessage() for record in caplog.records)
    runtime = hub.data["mqtt"]
    assert await runtime.connection.async_wait_connected(5)
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    for service in ("adopt", "remove", "command", "publish_config", "pending"):
        assert hub.services.has_service("mqtt", service)
    task = runtime.connection._task

    assert await manager.async_unload("mqtt") is True
    assert task is not None and task.done()
    assert not runtime.connection.connected
    assert "mqtt" not in hub.data
    assert hub.states.get("machine.lobby_1") is None
    assert hub.states.get("sensor.mqtt_link_errors") is None
    assert async_entities(hub, "mqtt") == []
    assert not hub.services.has_service("mqtt", "adopt")
    # what the machine sends now reaches nobody, and nothing breaks
    await machine.event("door_opened")

    again = await start_link(hub, plan.configs["mqtt"])
    await until(lambda: hub.states.is_state("machine.lobby_1", "online"))
    # the door event waited in the hub's session on the broker
    await until(lambda: hub.states.is_state("binary_sensor.lobby_1_door", "on"))
    assert again is not runtime
