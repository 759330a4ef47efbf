"""``vendhub simulate`` and ``vendhub agent``: virtual machines, real agents, real Mosquitto."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.machine.broker import HubClient
from tests.mosquitto import Mosquitto
from vendhub.config.errors import ConfigError
from vendhub.machine import protocol
from vendhub.machine.agent_config import build_agent, load_agent_config
from vendhub.machine.simulate import (
    HubAddress,
    Simulation,
    build_simulation,
    fleet,
    parse_hub_url,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_IDS = ["sim_001", "sim_002", "sim_003"]


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vendhub",
        *args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


async def stop_cli(child: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, then the exit code and what it logged."""
    if child.returncode is None:
        child.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(child.communicate(), 15)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    return child.returncode or 0, err.decode()


def test_parse_hub_url() -> None:
    assert parse_hub_url("mqtt://127.0.0.1:1884") == HubAddress("127.0.0.1", 1884)
    assert parse_hub_url("hub.local") == HubAddress("hub.local", 1883)
    assert parse_hub_url("mqtts://m1:p%40ss@hub.local") == HubAddress(
        "hub.local", 8883, "m1", "p@ss", tls=True
    )
    assert parse_hub_url("https://sim_001:pw@hub.local") == HubAddress(
        "hub.local", 8700, "sim_001", "pw", tls=True, transport="http"
    )
    with pytest.raises(ValueError, match="unsupported hub URL scheme 'ftp'"):
        parse_hub_url("ftp://hub.local")
    with pytest.raises(ValueError, match="bad port"):
        parse_hub_url("mqtt://hub.local:99999")


def test_fleet_is_varied_and_repeatable() -> None:
    specs = fleet(6, seed=7)
    assert [s["machine_id"] for s in specs] == [f"sim_00{n}" for n in range(1, 7)]
    assert [s["refrigerated"] for s in specs] == [False, True, False, False, True, False]
    assert specs == fleet(6, seed=7)
    products = {s["machine_id"]: s["slots"]["A1"]["product"] for s in specs}
    assert len(set(products.values())) > 1
    cola = specs[1]["slots"]
    assert all(slot["par"] == max(1, slot["capacity"] // 4) for slot in cola.values())
    assert all(slot["stock"] == slot["capacity"] for slot in cola.values())
    assert fleet(1000)[-1]["machine_id"] == "sim_1000"


async def test_simulate_command_publishes_three_machines_then_goes_offline(
    broker: Mosquitto, hub_client: HubClient, tmp_path: Path
) -> None:
    child = await start_cli(
        "simulate",
        "--machines", "3",
        "--hub", f"mqtt://127.0.0.1:{broker.port}",
        "--speed", "3600",
        "--tick", "0.2",
        "--seed", "7",
        "--sales-per-hour", "600",
        "--summary-interval", "0.5",
        "--outbox-dir", str(tmp_path / "outboxes"),
    )  # fmt: skip
    try:

        def everyone(kind: str) -> Any:
            return lambda hub: {m.machine_id for m in hub.of(kind)} >= set(SIM_IDS)

        await hub_client.wait_for(everyone("status"), timeout=20)
        await hub_client.wait_for(everyone("announce"), timeout=5)
        await hub_client.wait_for(lambda hub: len(hub.of("event")) >= 5, timeout=10)
        await hub_client.wait_for(everyone("telemetry"), timeout=5)
        for machine_id in SIM_IDS:
            status = protocol.decode("status", hub_client.of("status", machine_id)[0].payload)
            assert status["state"] == "online" and status["model"] == "VendHub Simulator"
            announce = protocol.decode("announce", hub_client.of("announce", machine_id)[0].payload)
            assert len(announce["slots"]) == 12
            assert announce["refrigerated"] is (machine_id == "sim_002")
        events = [protocol.decode("event", m.payload) for m in hub_client.of("event")]
        assert {e["event"] for e in events} & {"vend_started", "vend_completed", "vend_failed"}
        sale = next(e for e in events if e["event"] == "vend_completed")
        assert sale["data"]["price"] > 0 and sale["data"]["product"]
        chilled = protocol.decode("telemetry", hub_client.of("telemetry", "sim_002")[-1].payload)
        assert 0 < chilled["readings"]["temperature"] < 15
        assert chilled["readings"]["software_version"]
        # The hub acknowledges what it got so far.
        by_machine: dict[str, list[str]] = {}
        for message in hub_client.of("event"):
            by_machine.setdefault(message.machine_id, []).append(message.json["id"])
        for machine_id, ids in by_machine.items():
            await hub_client.publish(protocol.topic(machine_id, "ack"), {"v": 1, "ids": ids})
        await asyncio.sleep(0.7)  # one summary line after the acks
    finally:
        code, log = await stop_cli(child)
    assert code == 0, log
    await hub_client.wait_for(
        lambda hub: (
            {m.machine_id for m in hub.of("status") if m.json["state"] == "offline"} == set(SIM_IDS)
        ),
        timeout=5,
    )
    assert "Simulating 3 machines" in log
    assert "3/3 machines online" in log
    assert "Simulation stopped" in log
    acked = sum(len(set(ids)) for ids in by_machine.values())
    final = re.search(
        r"Simulation stopped: .* events sent (\d+) .* acked (\d+), pending (\d+)", log
    )
    assert final is not None, log
    sent, settled, pending = (int(group) for group in final.groups())
    assert settled == acked and sent == settled + pending and sent >= 5
    assert "Traceback" not in log
    assert sorted(p.name for p in (tmp_path / "outboxes").iterdir() if p.suffix == ".db") == [
        f"{machine_id}.db" for machine_id in SIM_IDS
    ]


@pytest.fixture
async def simulation(broker: Mosquitto, tmp_path: Path) -> AsyncIterator[Simulation]:
    """One simulated machine (no random sales) running in the test's event loop."""
    sim = build_simulation(
        machines=1,
        hub=HubAddress("127.0.0.1", broker.port),
        speed=60,
        tick=0.05,
        seed=3,
        outbox_dir=tmp_path / "outboxes",
        sales_per_hour=0,
        summary_interval=0,
        resend_after=5,
    )
    sim.machines[0].machine.door_openings_per_day = 0
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    await sim.machines[0].agent.wait_connected(5)
    yield sim
    stop.set()
    await asyncio.wait_for(task, 10)


async def command(hub: HubClient, name: str, correlation: str, args: dict[str, Any]) -> Any:
    await hub.publish(
        protocol.topic("sim_001", f"cmd/{name}"),
        {"v": 1, "id": correlation, "ts": datetime.now(UTC).isoformat(), "args": args},
    )
    answer = await hub.wait_message("cmd_result", "sim_001", lambda m: m.json["id"] == correlation)
    return protocol.decode("cmd_result", answer.payload)


async def test_commands_reach_the_virtual_machine(
    simulation: Simulation, hub_client: HubClient
) -> None:
    machine = simulation.machines[0].machine
    before = machine.slots["A1"].stock
    sold = await command(hub_client, "vend", "cmdvend01", {"slot": "A1", "payment_method": "card"})
    assert sold["ok"] is True, sold
    outcome = sold["result"]["outcome"]
    assert outcome in ("vend_completed", "vend_failed")
    expected_stock = before - 1 if outcome == "vend_completed" else before
    assert sold["result"]["stock"] == machine.slots["A1"].stock == expected_stock
    ids = sold["result"]["events"]
    await hub_client.wait_for(
        lambda hub: {m.json["id"] for m in hub.of("event", "sim_001")} >= set(ids)
    )
    vend_events = [m.json for m in hub_client.of("event", "sim_001") if m.json["id"] in ids]
    assert [e["event"] for e in vend_events] == ["vend_started", outcome]
    assert {e["data"]["vend_id"] for e in vend_events} == {sold["result"]["vend_id"]}

    locked = await command(hub_client, "lock_slots", "cmdlock01", {"slots": ["A2"]})
    assert locked["result"]["slots"] == {"A2": True}
    assert machine.slots["A2"].locked is True
    refused = await command(hub_client, "vend", "cmdvend02", {"slot": "A2"})
    assert refused["ok"] is True and refused["result"]["reason"] == "locked"
    missing = await command(hub_client, "restock", "cmdrest01", {"slot": "Z9"})
    assert missing["ok"] is False and "no slot 'Z9'" in missing["error"]
    restocked = await command(hub_client, "restock", "cmdrest02", {})
    assert set(restocked["result"]["slots"]) == set(machine.slots)
    door = await command(hub_client, "set_door", "cmddoor01", {"open": True})
    assert door["result"]["open"] is True and machine.door_open is True
    pong = await command(hub_client, "ping", "cmdping01", {})
    assert pong["result"]["pong"] is True
    unknown = await command(hub_client, "dance", "cmddance1", {})
    assert unknown["ok"] is False and unknown["error"] == "unknown command 'dance'"


async def test_config_sets_prices_and_mode(simulation: Simulation, hub_client: HubClient) -> None:
    simulated = simulation.machines[0]
    a1 = simulated.machine.slots["A1"]
    config = {
        "v": 1,
        "version": 2,
        "ts": "2024-05-06T12:00:00Z",
        "mode": "out_of_order",
        "slots": {"A1": {"product": "Lemonade", "price": 275, "capacity": 8, "par": 2}},
    }
    await hub_client.publish(protocol.topic("sim_001", "config"), config, retain=True)
    announce = await hub_client.wait_message(
        "announce", "sim_001", lambda m: m.json["slots"]["A1"]["product"] == "Lemonade"
    )
    assert announce.json["slots"]["A1"] == {
        "product": "Lemonade",
        "price": 275,
        "capacity": 8,
        "par": 2,
        "stock": min(8, a1.stock),
    }
    assert (a1.product, a1.price, a1.capacity) == ("Lemonade", 275, 8)
    assert simulated.mode == "out_of_order"
    assert simulated.machine.sales_per_hour == 0
    refused = await command(hub_client, "vend", "cmdvend03", {"slot": "A1"})
    assert refused["ok"] is False and refused["error"] == "machine sim_001 is in out_of_order mode"
    await hub_client.publish(
        protocol.topic("sim_001", "config"),
        {**config, "version": 3, "mode": "free_vend"},
        retain=True,
    )
    await hub_client.wait_message(
        "announce", "sim_001", lambda m: m.json["slots"]["A1"]["price"] == 0
    )
    assert simulated.mode == "free_vend" and a1.price == 0


def write_agent_config(folder: Path, port: int) -> None:
    folder.mkdir()
    (folder / "secrets.yaml").write_text("agent_password: not-needed-here\n")
    (folder / "agent.yaml").write_text(
        "machine_id: lobby_7\n"
        "broker:\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  username: lobby_7\n"
        "  password: !secret agent_password\n"
        "outbox: data/outbox.db\n"
        "resend_after: 5s\n"
        "simulated:\n"
        "  refrigerated: true\n"
        "  slots:\n"
        "    A1: {product: Cola, price: 150, capacity: 10}\n"
        "    A2: {product: Water, price: 120, capacity: 8, par: 4, stock: 5}\n"
        "  speed: 60\n"
    )


def test_agent_config_is_loaded_with_secrets_and_checked(tmp_path: Path) -> None:
    write_agent_config(tmp_path / "agent", 1884)
    config = load_agent_config(tmp_path / "agent")
    assert config["machine_id"] == "lobby_7"
    assert config["broker"] == {
        "host": "127.0.0.1",
        "port": 1884,
        "username": "lobby_7",
        "password": "not-needed-here",
        "tls": False,
    }
    assert config["outbox"] == (tmp_path / "agent" / "data" / "outbox.db").resolve()
    assert config["resend_after"] == 5.0
    assert config["simulated"]["slots"]["A2"]["stock"] == 5
    simulation = build_agent(config)
    machine = simulation.machines[0]
    assert machine.announce()["slots"]["A2"] == {
        "product": "Water", "price": 120, "capacity": 8, "par": 4, "stock": 5,
    }  # fmt: skip
    assert machine.announce()["slots"]["A1"]["par"] == 2
    assert machine.agent.username == "lobby_7"
    machine.agent.outbox.close()

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "agent.yaml").write_text("machine_id: Lobby 7\nbroker:\n  host: h\n  port: 99999\n")
    with pytest.raises(ConfigError) as caught:
        load_agent_config(bad)
    issues = [str(issue) for issue in caught.value.issues]
    assert any("agent.yaml:1" in text and "slug" in text for text in issues), issues
    with pytest.raises(ConfigError, match=r"no agent\.yaml"):
        load_agent_config(tmp_path / "nowhere")


async def test_agent_command_runs_one_machine(
    broker: Mosquitto, hub_client: HubClient, tmp_path: Path
) -> None:
    write_agent_config(tmp_path / "agent", broker.port)
    child = await start_cli("agent", "--config", str(tmp_path / "agent"))
    try:
        online = await hub_client.wait_message("status", "lobby_7", timeout=20)
        announce = await hub_client.wait_message("announce", "lobby_7")
        telemetry = await hub_client.wait_message("telemetry", "lobby_7", timeout=5)
    finally:
        code, log = await stop_cli(child)
    assert code == 0, log
    assert online.json["state"] == "online"
    assert announce.json["refrigerated"] is True
    assert set(announce.json["slots"]) == {"A1", "A2"}
    assert "temperature" in telemetry.json["readings"]
    offline = await hub_client.wait_message(
        "status", "lobby_7", lambda m: m.json["state"] == "offline"
    )
    assert offline.json["session"] == online.json["session"]
    assert (tmp_path / "agent" / "data" / "outbox.db").is_file()
    assert "Agent of machine lobby_7 (simulated)" in log


def test_agent_command_reports_a_bad_config(tmp_path: Path) -> None:
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "agent.yaml").write_text("machine_id: lobby_7\n")
    result = subprocess.run(
        [sys.executable, "-m", "vendhub", "agent", "--config", str(folder)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=30,
    )
    assert result.returncode == 1
    assert "broker" in result.stderr and "Traceback" not in result.stderr
