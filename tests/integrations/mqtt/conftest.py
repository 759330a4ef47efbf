"""Fixtures for the MQTT link tests: a Mosquitto per module, a hub, machines, a recorder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mosquitto import Mosquitto
from vendhub.core import Event, Hub
from vendhub.recorder.recorder import DATA_RECORDER, Recorder, RecorderConfig
from vendhub.registry import async_load_registries
from vendhub_integrations.mqtt import vendhub_config_schema, vendhub_setup, vendhub_unload
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .broker import TestMachine


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto of this module's own on a free port, stopped after the module."""
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of the test's own: its retained messages and session stay its own."""
    return f"t{uuid.uuid4().hex[:10]}"


def link_config(broker: Mosquitto, prefix: str, **options: Any) -> dict[str, Any]:
    """A validated ``mqtt:`` block for the test broker."""
    raw: dict[str, Any] = {
        "broker": {"host": "127.0.0.1", "port": broker.port},
        "topic_prefix": prefix,
        "keepalive": 5,
        "command_timeout": 2,
    }
    raw.update(options)
    return vendhub_config_schema()(raw)


async def make_hub(config_dir: Path) -> Hub:
    hub = Hub(config_dir)
    await async_load_registries(hub)
    return hub


async def start_link(hub: Hub, config: dict[str, Any], connect: bool = True) -> MqttRuntime:
    """Set the MQTT link up through its hook, as the hub does, and wait until it is connected."""
    assert await vendhub_setup(hub=hub, config=config) is True
    runtime = hub.data["mqtt"]
    assert isinstance(runtime, MqttRuntime)
    if connect:
        assert await runtime.connection.async_wait_connected(5), runtime.connection.last_error
    return runtime


async def stop_hub(hub: Hub) -> None:
    if "mqtt" in hub.data:
        await vendhub_unload(hub=hub)
    if not hub.is_stopping:
        await hub.async_stop()


async def start_recorder(
    hub: Hub, folder: Path, commit_interval: float = 0.2, **options: Any
) -> Recorder:
    """The real recorder on SQLite, committing often (``options``: more RecorderConfig)."""
    db_url = f"sqlite:///{folder / 'vendhub.db'}"
    recorder = Recorder(
        hub, RecorderConfig(db_url=db_url, commit_interval=commit_interval, **options)
    )
    await recorder.async_start()
    hub.data[DATA_RECORDER] = recorder
    return recorder


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub with its registries loaded; the link unloaded and the hub stopped afterwards."""
    instance = await make_hub(tmp_path)
    yield instance
    await stop_hub(instance)


MachineFactory = Callable[[str], Awaitable[TestMachine]]


@pytest.fixture
async def machines(broker: Mosquitto, prefix: str) -> AsyncIterator[MachineFactory]:
    """Connect test machines on the broker: ``await machines("lobby_1")``."""
    connected: list[TestMachine] = []

    async def connect(machine_id: str) -> TestMachine:
        machine = await TestMachine(broker.port, prefix, machine_id).connect()
        connected.append(machine)
        return machine

    yield connect
    for machine in connected:
        await machine.close()


def record(hub: Hub, *event_types: str) -> list[Event]:
    """Collect every event of ``event_types`` fired from now on."""
    events: list[Event] = []
    for event_type in event_types:
        hub.bus.async_listen(event_type, events.append)
    return events


async def until(check: Callable[[], Any], timeout: float = 5.0, step: float = 0.01) -> Any:
    """Poll ``check()`` until it returns something truthy, and return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return result


async def adopted_machine(
    hub: Hub, runtime: MqttRuntime, machine: TestMachine, refrigerated: bool = True
) -> None:
    """Announce ``machine``, bring it online and adopt it."""
    await machine.status("online")
    await machine.announce(refrigerated=refrigerated)
    await until(lambda: runtime.directory.get(machine.machine_id) is not None)
    await until(lambda: runtime.directory.get(machine.machine_id).status == "online")
    await hub.services.async_call("mqtt", "adopt", {"machine_id": machine.machine_id})
    await machine.wait_for(lambda: machine.of("config"))
