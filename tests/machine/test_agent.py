"""The machine agent against a real Mosquitto, with a plain MQTT client playing the hub."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.machine.broker import HubClient, Received
from tests.mosquitto import Mosquitto
from vendhub.const import __version__
from vendhub.machine import protocol
from vendhub.machine.agent import CommandError, MachineAgent, new_event
from vendhub.machine.outbox import Outbox

REPO_ROOT = Path(__file__).resolve().parents[2]
MACHINE = "lobby_1"

ANNOUNCE: dict[str, Any] = {
    "model": "Test Vendor 3000",
    "firmware": "2.1.0",
    "currency": "EUR",
    "refrigerated": True,
    "capabilities": ["cash", "card"],
    "slots": {
        "A1": {"product": "Cola", "price": 150, "capacity": 10, "par": 3, "stock": 8},
        "A2": {"product": "Water", "price": 120, "capacity": 10, "par": 3, "stock": 10},
    },
}


def vend(number: int) -> dict[str, Any]:
    return new_event(
        "vend_completed",
        {
            "vend_id": f"vend{number:08d}",
            "slot": "A1",
            "product": "Cola",
            "price": 150,
            "payment_method": "card",
            "stock": 10 - number,
            "cash_box": 0,
        },
    )


AgentFactory = Callable[..., MachineAgent]


@pytest.fixture
async def make_agent(broker: Mosquitto, tmp_path: Path) -> AsyncIterator[AgentFactory]:
    """Agents on the test broker with short resend and backoff times; stopped afterwards."""
    agents: list[MachineAgent] = []

    def factory(machine_id: str = MACHINE, **options: Any) -> MachineAgent:
        settings: dict[str, Any] = {
            "broker_host": "127.0.0.1",
            "broker_port": broker.port,
            "outbox_path": tmp_path / f"{machine_id}.db",
            "announce": ANNOUNCE,
            "resend_after": 0.4,
            "keepalive": 5,
            "backoff_min": 0.05,
            "backoff_max": 0.3,
        }
        settings.update(options)
        agent = MachineAgent(machine_id, **settings)
        agents.append(agent)
        return agent

    yield factory
    for agent in agents:
        await agent.stop(timeout=2)


def events(hub: HubClient, event_id: str | None = None) -> list[Received]:
    return [m for m in hub.of("event") if event_id is None or m.json["id"] == event_id]


async def ack(hub: HubClient, ids: list[str], machine_id: str = MACHINE) -> None:
    await hub.publish(protocol.topic(machine_id, "ack"), {"v": 1, "ids": ids})


async def test_online_status_and_announce_are_retained(
    make_agent: AgentFactory, broker: Mosquitto
) -> None:
    agent = make_agent()
    await agent.start()
    await agent.wait_connected(5)
    # A hub that connects later still learns both from the broker.
    async with HubClient(broker.port) as late:
        status = await late.wait_message("status", MACHINE)
        announce = await late.wait_message("announce", MACHINE)
    assert status.retain and status.qos == 1
    message = protocol.decode("status", status.payload)
    assert message["state"] == "online"
    assert message["session"] == agent.session
    assert len(agent.session) == 32
    assert (message["model"], message["firmware"]) == ("Test Vendor 3000", "2.1.0")
    assert announce.retain and announce.qos == 1
    decoded = protocol.decode("announce", announce.payload)
    assert decoded["slots"]["A1"] == ANNOUNCE["slots"]["A1"]
    assert decoded["refrigerated"] is True
    assert agent.connected and agent.stats.connections == 1


async def test_stop_publishes_offline_and_disconnects(
    make_agent: AgentFactory, hub_client: HubClient, broker: Mosquitto
) -> None:
    agent = make_agent()
    await agent.start()
    await hub_client.wait_message("status", MACHINE, lambda m: m.json["state"] == "online")
    await agent.stop()
    offline = await hub_client.wait_message(
        "status", MACHINE, lambda m: m.json["state"] == "offline"
    )
    assert offline.json["session"] == agent.session
    assert not agent.connected
    async with HubClient(broker.port) as late:
        retained = await late.wait_message("status", MACHINE)
    assert retained.retain and retained.json["state"] == "offline"


_KILLED_AGENT = textwrap.dedent(
    """
    import asyncio, sys
    from vendhub.machine.agent import MachineAgent
    from tests.machine.test_agent import ANNOUNCE

    async def main():
        agent = MachineAgent(
            "killed_1", broker_host="127.0.0.1", broker_port=int(sys.argv[1]),
            outbox_path=sys.argv[2], announce=ANNOUNCE, keepalive=5,
        )
        await agent.start()
        await agent.wait_connected(10)
        print(agent.session, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_last_will_is_offline_when_the_process_dies(
    hub_client: HubClient, broker: Mosquitto, tmp_path: Path
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_AGENT,
        str(broker.port),
        str(tmp_path / "killed.db"),
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert child.stdout is not None
        session = (await asyncio.wait_for(child.stdout.readline(), 15)).decode().strip()
        online = await hub_client.wait_message("status", "killed_1")
        assert online.json == {**online.json, "state": "online", "session": session}
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
        will = await hub_client.wait_message(
            "status", "killed_1", lambda m: m.json["state"] == "offline", timeout=5
        )
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert will.json["session"] == session
    assert will.json["model"] == "Test Vendor 3000"
    async with HubClient(broker.port) as late:
        retained = await late.wait_message("status", "killed_1")
    assert retained.retain and retained.json["state"] == "offline"


async def test_events_arrive_at_qos1_and_are_resent_until_acked(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    agent = make_agent(resend_after=0.3)
    await agent.start()
    await agent.wait_connected(5)
    message = vend(1)
    assert await agent.publish_event(message) is True
    assert agent.outbox.count() == 1
    first = await hub_client.wait_message("event", MACHINE)
    assert first.qos == 1 and not first.retain
    decoded = protocol.decode("event", first.payload)
    assert decoded["id"] == message["id"]
    assert decoded["seq"] == 1
    assert decoded["data"]["price"] == 150
    # Nobody acknowledges it: it comes again, the same message.
    await hub_client.wait_for(lambda hub: len(events(hub, message["id"])) >= 3, timeout=5)
    copies = events(hub_client, message["id"])
    assert {copy.payload for copy in copies} == {first.payload}
    assert agent.stats.events_resent >= 2
    assert agent.outbox.attempts(message["id"]) >= 3
    await ack(hub_client, [message["id"]])
    await agent.wait_drained(5)
    assert agent.outbox.count() == 0
    assert agent.stats.events_acked == 1
    settled = len(events(hub_client, message["id"]))
    await asyncio.sleep(0.8)  # more than two resend periods: nothing more comes
    assert len(events(hub_client, message["id"])) == settled


async def test_an_ack_empties_the_outbox_and_duplicates_are_ignored(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    agent = make_agent(resend_after=30)
    await agent.start()
    await agent.wait_connected(5)
    sent = [vend(number) for number in range(1, 6)]
    assert await agent.publish_events(sent) == 5
    assert await agent.publish_event(sent[0]) is False  # same id: not stored twice
    await hub_client.wait_for(lambda hub: len(events(hub)) == 5)
    received = [protocol.decode("event", m.payload) for m in events(hub_client)]
    assert sorted(m["seq"] for m in received) == [1, 2, 3, 4, 5]
    assert {m["id"] for m in received} == {m["id"] for m in sent}
    assert agent.outbox.count() == 5
    await ack(hub_client, [m["id"] for m in sent[:2]])
    await hub_client.wait_for(lambda _hub: agent.outbox.count() == 3, timeout=5)
    await ack(hub_client, [m["id"] for m in sent] + ["someoneelses1"])  # repeats are harmless
    await agent.wait_drained(5)
    assert agent.outbox.count() == 0
    assert agent.stats.events_acked == 5
    assert agent.stats.events_stored == 5
    assert agent.stats.events_resent == 0


async def test_invalid_events_never_enter_the_outbox(make_agent: AgentFactory) -> None:
    agent = make_agent()
    with pytest.raises(protocol.ProtocolError, match="price"):
        await agent.publish_event(
            new_event(
                "vend_completed",
                {"slot": "A1", "product": "Cola", "price": -1, "payment_method": "cash"},
            )
        )
    # A virtual machine's message (``type``, no ``v``) is made a protocol event.
    raw = {
        "type": "event",
        "id": "abcdef0123456789",
        "seq": 99,
        "ts": "2024-05-06T12:00:00Z",
        "event": "door_opened",
        "data": {},
    }
    assert await agent.publish_event(raw) is True
    (stored,) = agent.outbox.pending()
    assert stored == {
        "v": 1,
        "id": "abcdef0123456789",
        "seq": 1,
        "ts": "2024-05-06T12:00:00Z",
        "event": "door_opened",
        "data": {},
    }


async def test_events_published_while_the_broker_is_down_arrive_after_it_returns(
    make_agent: AgentFactory, broker: Mosquitto
) -> None:
    agent = make_agent(resend_after=30)
    await agent.start()
    await agent.wait_connected(5)
    broker.stop()
    await _until(lambda: not agent.connected)
    offline = [vend(number) for number in range(1, 4)]
    for message in offline:
        assert await agent.publish_event(message) is True
    assert await agent.telemetry({"temperature": 4.2}) is False  # telemetry is not kept
    assert agent.outbox.count() == 3
    await asyncio.sleep(0.5)  # a few reconnect attempts fail meanwhile
    broker.start()
    async with HubClient(broker.port) as hub:
        await agent.wait_connected(5)
        await hub.wait_for(lambda h: len(events(h)) >= 3, timeout=5)
        got = [protocol.decode("event", m.payload) for m in events(hub)]
        assert [m["id"] for m in got] == [m["id"] for m in offline]  # oldest first
        assert [m["seq"] for m in got] == [1, 2, 3]
        status = await hub.wait_message("status", MACHINE)
        assert status.json["state"] == "online"
        await ack(hub, [m["id"] for m in offline])
        await agent.wait_drained(5)
    assert agent.stats.connections == 2
    assert agent.stats.telemetry_dropped == 1
    assert agent.stats.errors >= 1  # the lost connection


async def test_a_dead_link_reconnects_with_will_and_resends(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    agent = make_agent(resend_after=30)
    await agent.start()
    await agent.wait_connected(5)
    message = vend(1)
    await agent.publish_event(message)
    await hub_client.wait_for(lambda hub: len(events(hub)) == 1)
    # The link dies without a goodbye: the broker publishes the will, the agent comes back
    # and resends what was not acknowledged.
    assert agent._client is not None
    agent._client._client.socket().shutdown(socket.SHUT_RDWR)
    await hub_client.wait_message("status", MACHINE, lambda m: m.json["state"] == "offline")
    await hub_client.wait_for(lambda hub: len(events(hub)) == 2, timeout=5)
    statuses = [m.json for m in hub_client.of("status", MACHINE)]
    assert [status["state"] for status in statuses] == ["online", "offline", "online"]
    # Each connection has its own session: the will names the connection that died.
    first, will, second = (status["session"] for status in statuses)
    assert first == will != second == agent.session
    assert {m.json["id"] for m in events(hub_client)} == {message["id"]}
    assert agent.stats.connections == 2
    assert agent.stats.events_resent == 1


async def test_acks_sent_while_away_are_delivered_by_the_persistent_session(
    make_agent: AgentFactory, hub_client: HubClient, tmp_path: Path
) -> None:
    agent = make_agent(resend_after=30)
    await agent.start()
    await agent.wait_connected(5)
    message = vend(1)
    await agent.publish_event(message)
    await hub_client.wait_for(lambda hub: len(events(hub)) == 1)
    await agent.stop()
    await ack(hub_client, [message["id"]])  # queued by the broker for the agent's session
    again = make_agent(resend_after=30)  # same machine, same outbox, same client id
    assert again.outbox.count() == 1
    await again.start()
    await again.wait_drained(5)
    assert again.outbox.count() == 0
    assert again.stats.events_acked == 1
    assert again.session != agent.session


async def test_command_round_trip(make_agent: AgentFactory, hub_client: HubClient) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def handler(name: str, args: dict[str, Any]) -> dict[str, Any]:
        calls.append((name, args))
        if name == "restock":
            return {"restocked": {args.get("slot", "all"): 10}}
        if name == "vend":
            raise CommandError(f"slot {args['slot']} is locked")
        raise RuntimeError("the board did not answer")

    agent = make_agent(command_handler=handler)
    await agent.start()
    await agent.wait_connected(5)

    async def command(
        name: str, correlation: str, args: Any, ts: str | None = None
    ) -> dict[str, Any]:
        sent = ts or datetime.now(UTC).isoformat()
        await hub_client.publish(
            protocol.topic(MACHINE, f"cmd/{name}"),
            {"v": 1, "id": correlation, "ts": sent, "args": args},
        )
        result = await hub_client.wait_message(
            "cmd_result", MACHINE, lambda m: m.json["id"] == correlation
        )
        assert result.qos == 1
        return protocol.decode("cmd_result", result.payload)

    ok = await command("restock", "corr0001", {"slot": "A1"})
    assert (ok["ok"], ok["result"], ok["error"]) == (True, {"restocked": {"A1": 10}}, None)
    refused = await command("vend", "corr0002", {"slot": "A2"})
    assert (refused["ok"], refused["result"]) == (False, None)
    assert refused["error"] == "slot A2 is locked"
    broken = await command("set_door", "corr0003", {"open": True})
    assert broken["ok"] is False and broken["error"] == "the board did not answer"
    pong = await command("ping", "corr0004", {})
    assert pong["ok"] is True and pong["result"]["pong"] is True
    assert pong["result"]["session"] == agent.session
    assert pong["result"]["software_version"] == __version__
    bad = await command("restock", "corr0005", "not an object")
    assert bad["ok"] is False and "args" in bad["error"]
    stale = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    expired = await command("restock", "corr0006", {"slot": "A1"}, ts=stale)
    assert (expired["ok"], expired["error"]) == (False, "expired")
    # The same command again (a redelivery) is answered again without running it twice.
    repeat = await command("restock", "corr0001", {"slot": "A1"})
    assert repeat["ok"] is True
    assert [name for name, _ in calls] == ["restock", "vend", "set_door"]
    assert calls[0] == ("restock", {"slot": "A1"})
    assert agent.stats.commands == 6
    assert agent.stats.commands_failed == 4
    assert agent.connected


async def test_commands_without_a_handler_are_unknown(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    agent = make_agent()
    await agent.start()
    await agent.wait_connected(5)
    await hub_client.publish(
        protocol.topic(MACHINE, "cmd/restock"),
        {"v": 1, "id": "corr0100", "ts": datetime.now(UTC).isoformat(), "args": {}},
    )
    answer = await hub_client.wait_message("cmd_result", MACHINE)
    assert answer.json["id"] == "corr0100"
    assert (answer.json["ok"], answer.json["error"]) == (False, "unknown command 'restock'")


async def test_config_is_passed_on_and_kept(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    config = {
        "v": 1,
        "version": 3,
        "ts": "2024-05-06T12:00:00+00:00",
        "mode": "service",
        "slots": {"A1": {"product": "Cola", "price": 170, "capacity": 10, "par": 3}},
    }
    topic = protocol.topic(MACHINE, "config")
    await hub_client.publish(topic, config, retain=True)  # there before the machine connects
    received: list[dict[str, Any]] = []
    agent = make_agent(on_config=received.append)
    await agent.start()
    await agent.wait_connected(5)
    await _until(lambda: len(received) == 1)
    assert received[0]["version"] == 3 and received[0]["mode"] == "service"
    assert received[0]["slots"]["A1"]["price"] == 170
    assert agent.config == received[0]
    await hub_client.publish(topic, b"{not json", retain=True)  # logged, counted, dropped
    await _until(lambda: agent.stats.errors == 1)
    await hub_client.publish(topic, {**config, "mode": "normal"}, retain=True)  # same version
    await hub_client.publish(topic, {**config, "version": 4, "mode": "normal"}, retain=True)
    await _until(lambda: len(received) == 2)
    assert [config["version"] for config in received] == [3, 4]
    assert agent.config is not None
    assert (agent.config["version"], agent.config["mode"]) == (4, "normal")
    assert agent.stats.configs == 2
    assert agent.connected and agent.stats.connections == 1


async def test_events_and_telemetry_share_one_sequence(
    make_agent: AgentFactory, hub_client: HubClient
) -> None:
    agent = make_agent(resend_after=30)
    await agent.start()
    await agent.wait_connected(5)
    assert await agent.telemetry({"temperature": 4.0}) is True
    await agent.publish_events([vend(1), vend(2)])
    assert await agent.telemetry({"temperature": 4.1}) is True
    await hub_client.wait_for(
        lambda hub: len(hub.of("event")) == 2 and len(hub.of("telemetry")) == 2
    )
    assert [m.json["seq"] for m in hub_client.of("telemetry")] == [1, 4]
    assert sorted(m.json["seq"] for m in hub_client.of("event")) == [2, 3]
    assert agent.outbox.counter("seq") == 3  # the events' numbers are on disk


async def test_telemetry_has_a_sequence_and_the_agents_health(
    make_agent: AgentFactory, hub_client: HubClient, tmp_path: Path
) -> None:
    agent = make_agent()
    await agent.start()
    await agent.wait_connected(5)
    assert await agent.telemetry({"temperature": 4.5, "compressor": True}) is True
    assert await agent.telemetry({"temperature": 4.7, "door_open": False}) is True
    await hub_client.wait_for(lambda hub: len(hub.of("telemetry", MACHINE)) == 2)
    first, second = (
        protocol.decode("telemetry", m.payload) for m in hub_client.of("telemetry", MACHINE)
    )
    assert (first["seq"], second["seq"]) == (1, 2)
    assert hub_client.of("telemetry")[0].qos == 0
    readings = second["readings"]
    assert readings["temperature"] == 4.7 and readings["door_open"] is False
    assert readings["software_version"] == __version__
    assert readings["errors"] == 0
    assert 0 <= readings["uptime"] < 60
    assert readings["disk_free_mb"] > 0
    assert agent.stats.telemetry_sent == 2


async def test_outbox_survives_an_agent_restart_without_a_broker(
    make_agent: AgentFactory, broker: Mosquitto, tmp_path: Path
) -> None:
    broker.stop()
    first = make_agent()
    await first.start()
    message = vend(1)
    await first.publish_event(message)
    await first.stop()
    with Outbox(tmp_path / f"{MACHINE}.db") as box:
        assert [m["id"] for m in box.pending()] == [message["id"]]
    broker.start()
    second = make_agent()
    async with HubClient(broker.port) as hub:
        await second.start()
        got = await hub.wait_message("event", MACHINE)
        assert got.json["id"] == message["id"] and got.json["seq"] == 1
        assert await second.publish_event(vend(2)) is True
        later = await hub.wait_message("event", MACHINE, lambda m: m.json["seq"] == 2)
        assert later.json["data"]["stock"] == 8  # the sequence continues across restarts


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (something outside the event loop's reach, such as the outbox)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition still false after {timeout} s")
