"""``config_applied``: the schema of the event, and the agent confirming configs it applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.machine.broker import HubClient
from tests.mosquitto import Mosquitto
from vendhub.machine import protocol
from vendhub.machine.agent import MachineAgent

from .test_agent import ANNOUNCE, MACHINE

CONFIG: dict[str, Any] = {
    "v": 1,
    "version": 5,
    "ts": "2024-05-06T12:00:00+00:00",
    "mode": "normal",
    "slots": {"A1": {"product": "Cola", "price": 170, "capacity": 10, "par": 3}},
}


def event(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1,
        "id": "e" * 32,
        "seq": 1,
        "ts": "2024-05-06T12:00:01Z",
        "event": "config_applied",
        "data": data,
    }


def test_the_event_carries_the_version_and_optionally_what_was_rejected() -> None:
    valid = protocol.validate("event", event({"version": 5, "rejected": {"slots.A9": "no slot"}}))
    assert valid["data"] == {"version": 5, "rejected": {"slots.A9": "no slot"}}
    for data, reason in [
        ({}, "config_applied: data > version: is required"),
        ({"version": "5"}, "data > version: expected a whole number"),
        ({"version": 5, "rejected": {"mode": 3}}, "data > rejected > mode: expected text"),
    ]:
        with pytest.raises(protocol.ProtocolError, match=reason):
            protocol.validate("event", event(data))


AgentFactory = Callable[..., MachineAgent]


@pytest.fixture
async def make_agent(broker: Mosquitto, tmp_path: Path) -> AsyncIterator[AgentFactory]:
    agents: list[MachineAgent] = []

    def factory(**options: Any) -> MachineAgent:
        agent = MachineAgent(
            MACHINE,
            broker_host="127.0.0.1",
            broker_port=broker.port,
            outbox_path=tmp_path / f"{len(agents)}.db",
            announce=ANNOUNCE,
            resend_after=0.4,
            keepalive=5,
            **options,
        )
        agents.append(agent)
        return agent

    yield factory
    for agent in agents:
        await agent.stop(timeout=2)


async def applied(hub_client: HubClient, count: int) -> list[dict[str, Any]]:
    def check(hub: HubClient) -> list[dict[str, Any]] | None:
        found = [
            item.json for item in hub.of("event", MACHINE) if item.json["event"] == "config_applied"
        ]
        return found if len(found) >= count else None

    result: list[dict[str, Any]] = await hub_client.wait_for(check, timeout=5)
    return result


async def test_the_agent_confirms_each_version_it_applies_through_its_outbox(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    seen: list[int] = []

    def on_config(config: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(config["version"])
        if config["version"] == 6:
            return {"rejected": {"slots.A1": "price above the coin limit"}}
        if config["version"] == 7:
            raise ValueError("planogram board not answering")
        return None

    agent = make_agent(on_config=on_config)
    topic = protocol.topic(MACHINE, "config")
    await hub_client.publish(topic, CONFIG, retain=True)
    await agent.start()
    await agent.wait_connected(5)
    first = (await applied(hub_client, 1))[0]
    assert first["data"] == {"version": 5}
    assert first["seq"] >= 1 and len(first["id"]) == 32
    assert agent.outbox.count() == 1  # kept until the hub acks it

    await hub_client.publish(topic, CONFIG, retain=True)  # the same version: no new confirm
    await hub_client.publish(topic, {**CONFIG, "version": 6}, retain=True)
    await hub_client.publish(topic, {**CONFIG, "version": 7}, retain=True)
    confirmations = await applied(hub_client, 3)
    data = [item["data"] for item in confirmations if item["id"] != first["id"]]
    assert data[:2] == [
        {"version": 6, "rejected": {"slots.A1": "price above the coin limit"}},
        {"version": 7, "rejected": {"config": "planogram board not answering"}},
    ]
    assert seen == [5, 6, 7]
    # Unacknowledged confirmations are sent again, unchanged, until acked.
    resent = await hub_client.wait_for(
        lambda hub: [item for item in hub.of("event", MACHINE) if item.json["id"] == first["id"]][
            1:
        ],
        timeout=5,
    )
    assert resent[0].json == first
    ids = [item["id"] for item in confirmations]
    await hub_client.publish(
        protocol.topic(MACHINE, "ack"), {"v": 1, "ids": list(dict.fromkeys(ids))}
    )
    await agent.wait_drained(5)


async def test_an_agent_told_not_to_confirm_stays_silent(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    received: list[dict[str, Any]] = []
    agent = make_agent(on_config=received.append, confirm_configs=False)
    await hub_client.publish(protocol.topic(MACHINE, "config"), CONFIG, retain=True)
    await agent.start()
    await agent.wait_connected(5)
    for _ in range(250):  # the agent's own list: poll it
        if received:
            break
        await asyncio.sleep(0.02)
    assert received and received[0]["version"] == 5
    await agent.publish_event({"event": "door_opened"})  # a later event: the config came first
    await hub_client.wait_message("event", MACHINE)
    assert [item.json["event"] for item in hub_client.of("event", MACHINE)] == ["door_opened"]
    assert agent.outbox.count() == 1
