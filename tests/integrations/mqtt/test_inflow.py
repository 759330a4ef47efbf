"""Taking messages from the broker: batched, acknowledged once handled, paced by the backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import aiomqtt
import pytest

from tests.mosquitto import Mosquitto
from vendhub.core import Hub
from vendhub_integrations.mqtt.connection import BrokerConnection
from vendhub_integrations.mqtt.inflow import Inflow
from vendhub_integrations.mqtt.schema import BrokerSettings

from .conftest import link_config, until

Handler = Callable[[aiomqtt.Message], Awaitable[None]]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto that keeps what a slow subscriber has not taken yet (as the hub's should)."""
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.config.write_text(mosquitto.config.read_text() + "max_queued_messages 100000\n")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def connection(hub: Hub, broker: Mosquitto, prefix: str, on_message: Handler) -> BrokerConnection:
    config = link_config(broker, prefix, client_id=f"{prefix}-hub")
    return BrokerConnection(
        hub, BrokerSettings.from_config(config), [(f"{prefix}/#", 1)], on_message
    )


async def publish(broker: Mosquitto, topic: str, count: int) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for number in range(count):
            await client.publish(topic, str(number).encode(), qos=1)


async def test_a_slow_hub_holds_at_most_the_high_water_mark(
    hub: Hub, broker: Mosquitto, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Inflow, "high", 40)
    monkeypatch.setattr(Inflow, "low", 10)
    received: dict[str, list[int]] = {}
    waiting: list[int] = []

    async def slow(message: aiomqtt.Message) -> None:
        waiting.append(len(link._client.messages) if link._client else 0)
        received.setdefault(message.topic.value, []).append(int(message.payload))
        await asyncio.sleep(0.002)

    link = connection(hub, broker, prefix, slow)
    link.start()
    try:
        assert await link.async_wait_connected(5)
        await asyncio.gather(*(publish(broker, f"{prefix}/m{index}", 150) for index in range(4)))
        await until(lambda: sum(map(len, received.values())) >= 600, timeout=30)
    finally:
        await link.async_stop()
    # Every message once, in order per publisher; though the hub fell far behind the 600
    # sent at once, no more than the mark (and what one read brings) waited in it.
    assert received == {f"{prefix}/m{index}": list(range(150)) for index in range(4)}
    assert 30 <= max(waiting) <= 40 + 5


async def test_a_handler_that_waits_for_the_broker_is_not_starved(
    hub: Hub, broker: Mosquitto, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Adopting a machine publishes its config and waits for the PUBACK, which is not read
    # while reading stops: it goes on when nothing is handled for a moment.
    monkeypatch.setattr(Inflow, "high", 20)
    monkeypatch.setattr(Inflow, "low", 5)
    answered: list[int] = []

    async def publishes(message: aiomqtt.Message) -> None:
        if message.topic.value.startswith(f"{prefix}/in/"):
            await link.async_publish(f"{prefix}/out/{int(message.payload)}", b"ok", qos=1)
            answered.append(int(message.payload))

    link = connection(hub, broker, prefix, publishes)
    link.start()
    try:
        assert await link.async_wait_connected(5)
        await publish(broker, f"{prefix}/in/x", 60)
        await until(lambda: len(answered) >= 60, timeout=20)
    finally:
        await link.async_stop()
    assert answered == list(range(60))


async def test_what_was_read_but_not_handled_comes_again_after_a_restart(
    hub: Hub, broker: Mosquitto, prefix: str
) -> None:
    handled: list[int] = []
    stuck = asyncio.Event()

    async def stops_at_five(message: aiomqtt.Message) -> None:
        if int(message.payload) == 5:
            stuck.set()
            await asyncio.Event().wait()  # the hub dies while handling this one
        handled.append(int(message.payload))

    first = connection(hub, broker, prefix, stops_at_five)
    first.start()
    assert await first.async_wait_connected(5)
    await publish(broker, f"{prefix}/m", 20)
    await asyncio.wait_for(stuck.wait(), 10)
    await first.async_stop()
    assert handled == [0, 1, 2, 3, 4]

    async def takes_all(message: aiomqtt.Message) -> None:
        handled.append(int(message.payload))

    second = connection(hub, broker, prefix, takes_all)
    second.start()
    try:
        await until(lambda: len(handled) >= 20, timeout=10)
    finally:
        await second.async_stop()
    assert handled == list(range(20))


async def test_reading_pauses_and_resumes_on_the_marks(broker: Mosquitto) -> None:
    client = aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5)
    flow = Inflow(client, manual_ack=True)
    flow.high, flow.low = 3, 1
    async with client:
        await client.subscribe("bp/#", qos=1)
        await publish(broker, "bp/x", 6)
        seen = []
        async for message in flow.messages():
            seen.append((int(message.payload), len(client.messages), flow.paused))
            flow.handled(message)
            if len(seen) == 6:
                break
    assert [number for number, _, _ in seen] == list(range(6))
    assert flow.pauses >= 1
    assert not flow.paused


async def test_a_long_pause_still_reads_now_and_then(broker: Mosquitto) -> None:
    # paho drops a broker it has heard nothing from for the keepalive.
    client = aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5)
    flow = Inflow(client, manual_ack=True)
    flow.high, flow.low = 3, 1
    flow.longest_pause = 0.2
    async with client:
        await client.subscribe("lp/#", qos=1)
        await publish(broker, "lp/x", 20)
        await asyncio.sleep(0.1)
        assert len(client.messages) == 3
        await asyncio.sleep(1.0)
        assert 5 <= len(client.messages) <= 10
        assert flow.paused


async def test_reading_waits_while_the_hub_is_behind_further_on(broker: Mosquitto) -> None:
    # The recorder's writer falling behind stops reading too: the broker keeps the rest.
    behind = True
    client = aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5)
    flow = Inflow(client, manual_ack=True, behind=lambda: behind)
    async with client:
        await client.subscribe("bh/#", qos=1)
        await publish(broker, "bh/x", 10)
        await asyncio.sleep(0.3)
        assert len(client.messages) == 1
        assert flow.paused
        behind = False
        got = []
        async for message in flow.messages():
            got.append(int(message.payload))
            flow.handled(message)
            if len(got) == 10:
                break
    assert got == list(range(10))
