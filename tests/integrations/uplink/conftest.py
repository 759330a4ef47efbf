"""Two hubs and a real Mosquitto: a fleet hub (``mqtt`` link, recorder) and a machine hub
(``vending:`` with a simulator board and the ``instant`` provider, and ``uplink:``), both
in this test process, each with its own folder."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.integrations.mqtt.conftest import (
    link_config,
    make_hub,
    start_link,
    start_recorder,
    stop_hub,
    until,
)
from tests.mosquitto import Mosquitto
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub.recorder.models import Payment, VendTransaction
from vendhub.recorder.recorder import Recorder
from vendhub_integrations.mqtt.runtime import MqttRuntime
from vendhub_integrations.uplink.machine_link import MachineUplink

MACHINE_ID = "lobby_1"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto of this module's own on a free port, stopped after the module."""
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of the test's own: its retained messages and sessions stay its own."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Fleet:
    """The fleet hub: its MQTT link and its recorder."""

    hub: Hub
    runtime: MqttRuntime
    recorder: Recorder

    def attributes(self, entity_id: str) -> dict[str, Any]:
        state = self.hub.states.get(entity_id)
        assert state is not None, entity_id
        return dict(state.attributes)

    def state(self, entity_id: str) -> str | None:
        state = self.hub.states.get(entity_id)
        return None if state is None else state.state

    def vends(self, machine_id: str = MACHINE_ID) -> list[Any]:
        """The fleet ledger's vend rows of ``machine_id``, oldest first."""
        with self.recorder.engine.connect() as connection:
            return list(
                connection.execute(
                    select(VendTransaction)
                    .where(VendTransaction.machine_id == machine_id)
                    .order_by(VendTransaction.id)
                )
            )

    def payments(self, machine_id: str = MACHINE_ID) -> list[Any]:
        """The fleet ledger's payment rows of ``machine_id``, oldest first."""
        with self.recorder.engine.connect() as connection:
            return list(
                connection.execute(
                    select(Payment).where(Payment.machine_id == machine_id).order_by(Payment.id)
                )
            )

    async def adopt(self, machine_id: str = MACHINE_ID) -> None:
        await until(lambda: self.runtime.directory.get(machine_id) is not None, timeout=10)
        await self.hub.services.async_call("mqtt", "adopt", {"machine_id": machine_id})
        await until(lambda: self.hub.states.get(f"machine.{machine_id}") is not None)


@pytest.fixture
async def fleet(tmp_path: Path, broker: Mosquitto, prefix: str) -> AsyncIterator[Fleet]:
    folder = tmp_path / "fleet"
    folder.mkdir()
    hub = await make_hub(folder)
    recorder = await start_recorder(hub, folder, commit_interval=0.1)
    runtime = await start_link(hub, link_config(broker, prefix))
    yield Fleet(hub, runtime, recorder)
    await stop_hub(hub)


MACHINE_CONFIGURATION = """\
vendhub:
  name: Lobby machine
  currency: EUR
vending:
  machines:
    lobby_1:
      name: Lobby
      planogram:
        A1: {{product: Cola, price: 150, capacity: 10, par: 8, stock: 5}}
        A2: {{product: Water, price: 100, capacity: 10, stock: 5}}
      dispenser:
        platform: simulator
        dispense_time: 0
      payments:
        - platform: instant
uplink:
  broker: mqtt://127.0.0.1:{port}
  prefix: {prefix}
  machines: [lobby_1]
  telemetry_interval: 1s
  resend_after: 1s
  keepalive: 5
"""


@dataclass
class MachineHub:
    """The hub on the machine's Pi, started from its configuration folder."""

    folder: Path
    hub: Hub

    @property
    def link(self) -> MachineUplink:
        return self.hub.data["uplink"][0]

    async def buy(self, slot: str = "A1", machine_id: str = MACHINE_ID) -> dict[str, Any]:
        return await self.hub.services.async_call(
            "vending",
            "select",
            {"machine_id": machine_id, "slot": slot, "method": "card"},
            blocking=True,
        )


MachineStarter = Callable[[], Awaitable[MachineHub]]


async def linked(fleet: Fleet, machine_hub: MachineStarter, *, drained: bool = False) -> MachineHub:
    """Start the machine hub, let the fleet adopt it and wait until the machine confirmed the
    fleet's first config (and, ``drained``, until its outbox is empty)."""
    machine = await machine_hub()
    await machine.link.agent.wait_connected(10)
    await fleet.adopt()
    await until(lambda: fleet.attributes(f"machine.{MACHINE_ID}")["config_applied_version"] == 1)
    if drained:
        await machine.link.agent.wait_drained(10)
    return machine


@pytest.fixture
async def machine_hub(
    tmp_path: Path, broker: Mosquitto, prefix: str
) -> AsyncIterator[MachineStarter]:
    """``await machine_hub()`` starts the machine hub (again, after a stop: same folder)."""
    folder = tmp_path / "machine"
    folder.mkdir()
    (folder / "configuration.yaml").write_text(
        textwrap.dedent(MACHINE_CONFIGURATION.format(port=broker.port, prefix=prefix))
    )
    running: list[Hub] = []
    yield lambda: start_machine_hub_in(folder, running)
    await stop_machine_hubs(running)


async def start_machine_hub_in(folder: Path, running: list[Hub]) -> MachineHub:
    """Start the hub of ``folder`` (no configuration issue, every integration set up) and add
    it to ``running``, for ``stop_machine_hubs``."""
    prepared = prepare(folder)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}, report.failed
    running.append(hub)
    return MachineHub(folder, hub)


async def stop_machine_hubs(running: list[Hub]) -> None:
    for hub in running:
        if not hub.is_stopping:
            await hub.async_stop()
