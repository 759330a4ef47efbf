"""A configured recorder that cannot start (a damaged database, an invalid ``recorder:``
block) does not make the MQTT link ack sales as if nobody wanted them recorded: machines keep
them in their outboxes until a recorder runs. A real Mosquitto, the real bootstrap."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.mosquitto import Mosquitto
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .broker import TestMachine, vend_data
from .conftest import adopted_machine

RECORDER_BLOCKS = {
    "damaged database": 'recorder:\n  db_url: "sqlite:///{folder}/vendhub.db"\n',
    "invalid block": "recorder:\n  keep_dayz: 10\n",
}


async def start(folder: Path, broker: Mosquitto, prefix: str, recorder: str) -> Hub:
    (folder / "vendhub.db").write_bytes(b"this is not an SQLite database" * 400)
    (folder / "configuration.yaml").write_text(
        recorder.format(folder=folder)
        + f"mqtt:\n  broker: {{host: 127.0.0.1, port: {broker.port}}}\n"
        f"  topic_prefix: {prefix}\n  keepalive: 5\n"
    )
    prepared = await asyncio.to_thread(prepare, folder)
    hub, report = await async_start_hub(prepared)
    assert "recorder" not in report.loaded and "mqtt" in report.loaded
    return hub


@pytest.mark.parametrize("recorder", list(RECORDER_BLOCKS.values()), ids=list(RECORDER_BLOCKS))
async def test_sales_are_not_acked_while_the_configured_recorder_is_not_running(
    tmp_path: Path,
    broker: Mosquitto,
    prefix: str,
    recorder: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        hub = await start(tmp_path, broker, prefix, recorder)
    machine = await TestMachine(broker.port, prefix, "lobby_1").connect()
    try:
        runtime = hub.data["mqtt"]
        assert isinstance(runtime, MqttRuntime)
        assert "The recorder is configured but not running" in caplog.text
        assert "No recorder is set up" not in caplog.text
        await adopted_machine(hub, runtime, machine)

        sale = await machine.event("vend_completed", vend_data())
        door = await machine.event("door_opened")
        await machine.wait_acked(door)  # the link works: a door event is acked
        await asyncio.sleep(0.5)
        assert sale not in machine.acked()
        # A copy sent again (the machine's outbox resends) is not acked either.
        await machine.event("vend_completed", vend_data(), event_id=sale)
        await machine.wait_acked(await machine.event("door_closed"))
        await asyncio.sleep(0.3)
        assert sale not in machine.acked()
    finally:
        await machine.close()
        await hub.async_stop()
