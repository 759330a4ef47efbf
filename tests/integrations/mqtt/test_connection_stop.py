"""The hub's stop is bounded even when a cancellation of the MQTT connection gets lost.

Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives in the same turn of the
loop as the answer it waits for; aiomqtt waits for SUBACKs and PUBACKs with it. Under load a
teardown right after a reconnect hit it and hung for the keepalive. Here the on-connect
handler drops the cancellation itself, which is the same to the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from tests.mosquitto import Mosquitto
from vendhub.core import Hub
from vendhub_integrations.mqtt import connection as connection_module
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .conftest import link_config, start_link, stop_hub


async def test_a_cancellation_lost_while_connecting_still_stops_the_connection(
    hub: Hub, prefix: str, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "DISCONNECT_TIMEOUT", 10.0)
    in_handler = asyncio.Event()

    async def drops_a_cancellation(runtime: MqttRuntime) -> None:
        in_handler.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)

    monkeypatch.setattr(MqttRuntime, "_async_on_connect", drops_a_cancellation)
    runtime = await start_link(hub, link_config(broker, prefix, keepalive=60), connect=False)
    await asyncio.wait_for(in_handler.wait(), 5)

    started = time.monotonic()
    await stop_hub(hub)
    elapsed = time.monotonic() - started

    # It ends at once, by the connection's own check, not after the stop's bound.
    assert elapsed < 2, f"the hub took {elapsed:.1f} s to stop"
    assert runtime.connection.connects == 1
    assert not runtime.connection.connected


async def test_a_connection_that_ignores_every_cancellation_is_left_behind_in_bounded_time(
    hub: Hub,
    prefix: str,
    broker: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(connection_module, "DISCONNECT_TIMEOUT", 0.3)
    in_handler = asyncio.Event()
    release = asyncio.Event()

    async def drops_every_cancellation(runtime: MqttRuntime) -> None:
        in_handler.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    monkeypatch.setattr(MqttRuntime, "_async_on_connect", drops_every_cancellation)
    runtime = await start_link(hub, link_config(broker, prefix), connect=False)
    await asyncio.wait_for(in_handler.wait(), 5)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        await stop_hub(hub)
    elapsed = time.monotonic() - started

    assert elapsed < 3, f"the hub took {elapsed:.1f} s to stop"
    assert "did not end when cancelled twice; left behind" in caplog.text
    # Let it go: it ends by itself, by the connection's own check, without reconnecting.
    release.set()
    await asyncio.sleep(0.2)
    assert runtime.connection.connects == 1
    assert not runtime.connection.connected
