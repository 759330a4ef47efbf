"""A fleet end to end: ``vendhub simulate`` → Mosquitto → the hub's MQTT link → states, ledger."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.mosquitto import Mosquitto
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub.recorder.models import VendTransaction
from vendhub.recorder.recorder import get_recorder

MACHINES = 50
KEEPALIVE = 5


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def machines_in(hub: Hub, state: str) -> int:
    return sum(1 for s in hub.states.async_all("machine") if s.state == state)


async def start_hub(tmp_path: Path, broker: Mosquitto) -> Hub:
    config_dir = tmp_path / "hub"
    config_dir.mkdir()
    (config_dir / "configuration.yaml").write_text(
        "recorder:\n  commit_interval: 0.5\n"
        "mqtt:\n"
        f"  broker: {{host: 127.0.0.1, port: {broker.port}}}\n"
        "  auto_adopt: true\n"
        f"  keepalive: {KEEPALIVE}\n"
    )
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}
    return hub


def start_simulator(tmp_path: Path, broker: Mosquitto, machines: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "vendhub", "simulate", "--machines", str(machines),
        "--hub", f"mqtt://127.0.0.1:{broker.port}", "--speed", "600", "--tick", "0.5",
        "--seed", "3", "--outbox-dir", str(tmp_path / "outboxes"),
        "--keepalive", str(KEEPALIVE),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def recorded_sales(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(VendTransaction)).scalar_one())


def live_temperatures(hub: Hub) -> list[str]:
    return [
        state.state
        for state in hub.states.async_all("sensor")
        if state.entity_id.endswith("_temperature")
        and state.state not in ("unknown", "unavailable")
    ]


async def test_fifty_simulated_machines_come_online_sell_and_go_offline(
    tmp_path: Path, broker: Mosquitto
) -> None:
    hub = await start_hub(tmp_path, broker)
    simulate = start_simulator(tmp_path, broker, MACHINES)
    try:
        await wait_until(lambda: machines_in(hub, "online") == MACHINES, 30)
        slots = hub.states.async_all("slot")
        assert len({state.attributes["machine_id"] for state in slots}) == MACHINES
        await wait_until(lambda: bool(live_temperatures(hub)), 30)
        recorder = get_recorder(hub)
        deadline = time.monotonic() + 30
        while await recorder.async_query(recorded_sales) == 0:
            assert time.monotonic() < deadline, "no sale was recorded"
            await asyncio.sleep(0.5)

        stopped = time.monotonic()
        simulate.send_signal(signal.SIGTERM)
        assert simulate.wait(timeout=20) == 0
        await wait_until(lambda: machines_in(hub, "offline") == MACHINES, KEEPALIVE * 1.5 + 5)
        assert time.monotonic() - stopped <= KEEPALIVE * 1.5 + 5
    finally:
        if simulate.poll() is None:
            simulate.kill()
        await hub.async_stop()


async def test_a_killed_simulator_goes_offline_by_its_last_will_within_the_keepalive_window(
    tmp_path: Path, broker: Mosquitto
) -> None:
    hub = await start_hub(tmp_path, broker)
    simulate = start_simulator(tmp_path, broker, 5)
    try:
        await wait_until(lambda: machines_in(hub, "online") == 5, 30)
        killed = time.monotonic()
        simulate.send_signal(signal.SIGKILL)  # no clean DISCONNECT: the broker sends the wills
        simulate.wait(timeout=10)
        await wait_until(lambda: machines_in(hub, "offline") == 5, KEEPALIVE * 1.5 + 5)
        assert time.monotonic() - killed <= KEEPALIVE * 1.5 + 5
    finally:
        if simulate.poll() is None:
            simulate.kill()
        await hub.async_stop()
