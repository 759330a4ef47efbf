"""The hub down for 60 s while machines keep selling: every sale is recorded exactly once.

A real Mosquitto, a hub started from a configuration folder (recorder on a SQLite file, the
``mqtt`` integration), and simulated machines, each a virtual machine behind its own
``MachineAgent`` with an on-disk outbox (the runner of ``vendhub simulate``), selling all the
time. The whole hub is stopped, as a real restart: its persistent MQTT session on the broker
keeps the QoS 1 events published meanwhile, and the agents keep every unacknowledged event
in their outboxes. The machines go on selling for 60 real seconds; then a new hub starts on
the same configuration and database. The truth is what the machines did, collected from the
virtual machines themselves: each vend event id must be in the ledger exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.mosquitto import Mosquitto
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub.machine.simulate import HubAddress, SimulatedMachine, Simulation, build_simulation
from vendhub.recorder.models import VendTransaction
from vendhub.recorder.recorder import get_recorder

MACHINES = 4
SPEED = 60.0  # simulated seconds per real second
SALES_PER_HOUR = 15.0  # simulated, flat all day: 15 * 60 / 3600 = 0.25 sales per real second
HUB_DOWN = 60.0  # real seconds the hub is away while the machines sell
VEND_OUTCOMES = frozenset({"vend_completed", "vend_failed"})  # the rows of vend_transactions

_LOGGER = logging.getLogger(__name__)


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


def write_config(config_dir: Path, broker: Mosquitto) -> None:
    config_dir.mkdir()
    (config_dir / "configuration.yaml").write_text(
        "recorder:\n"
        f"  db_url: sqlite:///{config_dir / 'vendhub.db'}\n"
        "  commit_interval: 0.5\n"
        "mqtt:\n"
        f"  broker: {{host: 127.0.0.1, port: {broker.port}}}\n"
        "  auto_adopt: true\n"
        "  keepalive: 5\n"
    )


async def start_hub(config_dir: Path) -> Hub:
    """A whole hub from the configuration folder, as ``vendhub run`` starts it."""
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}
    return hub


def machines_online(hub: Hub) -> set[str]:
    return {
        state.entity_id.removeprefix("machine.")
        for state in hub.states.async_all("machine")
        if state.state == "online"
    }


def ledger_rows(session: Session) -> list[tuple[str, str]]:
    rows = session.execute(select(VendTransaction.machine_id, VendTransaction.source_event_id))
    return [(machine_id, event_id) for machine_id, event_id in rows]


def record_vends(simulated: SimulatedMachine, sold: list[tuple[str, str]]) -> None:
    """Note the id of every vend outcome the virtual machine produces, as it produces it."""
    machine = simulated.machine
    step = machine.step

    def step_and_note(sim_seconds: float) -> list[dict[str, Any]]:
        messages = step(sim_seconds)
        sold.extend(
            (machine.machine_id, message["id"])
            for message in messages
            if message.get("type") == "event" and message["event"] in VEND_OUTCOMES
        )
        return messages

    machine.step = step_and_note  # type: ignore[method-assign]


def outbox_events(path: Path) -> dict[str, bool]:
    """Every event id an agent's outbox holds, and whether it was acknowledged."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, acked_at IS NOT NULL FROM outbox").fetchall()
    return {event_id: bool(acked) for event_id, acked in rows}


@pytest.mark.timeout(HUB_DOWN + 240)
async def test_sales_made_while_the_hub_is_down_for_60_s_are_recorded_exactly_once(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config_dir = tmp_path / "hub"
    write_config(config_dir, broker)
    simulation: Simulation = build_simulation(
        machines=MACHINES,
        hub=HubAddress("127.0.0.1", broker.port),
        speed=SPEED,
        tick=0.25,
        seed=11,
        outbox_dir=tmp_path / "outboxes",
        sales_per_hour=SALES_PER_HOUR,
        summary_interval=0,
        keepalive=5,
    )
    ids = {simulated.machine_id for simulated in simulation.machines}
    sold: list[tuple[str, str]] = []  # (machine id, event id) of every vend, in order
    for simulated in simulation.machines:
        simulated.machine.daily_curve = (1.0,) * 24  # the same rate at any hour of the day
        simulated.machine.door_openings_per_day = 0  # an open door stops sales
        record_vends(simulated, sold)
    agents = [simulated.agent for simulated in simulation.machines]

    hub = await start_hub(config_dir)
    stop_selling = asyncio.Event()
    selling = asyncio.create_task(simulation.run(stop_selling))
    second: Hub | None = None
    try:
        await wait_until(lambda: machines_online(hub) == ids, 30, "every machine online")
        recorder = get_recorder(hub)
        assert recorder is not None
        deadline = time.monotonic() + 30
        while len(await recorder.async_query(ledger_rows)) < MACHINES:
            assert time.monotonic() < deadline, "the first hub recorded no sales"
            await asyncio.sleep(0.5)

        # The hub goes away completely; the machines keep selling for a minute.
        await hub.async_stop()
        sold_before = len(sold)
        await asyncio.sleep(HUB_DOWN)
        sold_while_down = len(sold) - sold_before
        assert not selling.done(), "the simulation stopped while the hub was away"
        assert all(agent.connected for agent in agents), "a machine lost the broker"
        waiting = sum(agent.pending for agent in agents)
        # At 0.25 sales per second per machine, a minute gives about 60: far more than 20.
        assert sold_while_down >= 20, sold_while_down
        assert waiting >= sold_while_down  # unacknowledged, vend_started events included

        # A new hub on the same configuration and database.
        second = await start_hub(config_dir)
        await wait_until(lambda: machines_online(second) == ids, 30, "machines online again")
        sold_at_return = len(sold)
        await wait_until(lambda: len(sold) >= sold_at_return + MACHINES, 30, "sales go on")

        # The machines stop selling; every event they made must be acknowledged.
        for simulated in simulation.machines:
            simulated.sales_per_hour = simulated.machine.sales_per_hour = 0.0
        drain_started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(agent.wait_drained() for agent in agents)), timeout=150
        )
        drained_after = time.monotonic() - drain_started
        assert sum(agent.pending for agent in agents) == 0

        recorder = get_recorder(second)
        assert recorder is not None
        await recorder.async_flush()
        ledger = Counter(await recorder.async_query(ledger_rows))
        made = Counter(sold)
        assert len(made) == len(sold), "a virtual machine repeated an event id"
        twice = {key: count for key, count in ledger.items() if count > 1}
        missing = set(made) - set(ledger)
        extra = set(ledger) - set(made)
        assert not twice, f"recorded more than once: {twice}"
        assert not missing, f"{len(missing)} of {len(made)} sales never recorded: {missing}"
        assert not extra, f"recorded sales no machine made: {extra}"
        assert sum(ledger.values()) == len(sold)
        completed = sum(
            s.machine.vends_completed + s.machine.vends_failed for s in simulation.machines
        )
        assert completed == len(sold)
        _LOGGER.info(
            "%d vends recorded once each (%d made while the hub was down); drained %.1f s "
            "after the sales stopped",
            len(sold),
            sold_while_down,
            drained_after,
        )
        # The machines are online at the new hub, and each outbox saw every one of its vends
        # acknowledged.
        assert machines_online(second) == ids
        for simulated in simulation.machines:
            stored = outbox_events(simulated.agent.outbox_path)
            own = {event_id for machine_id, event_id in sold if machine_id == simulated.machine_id}
            assert own <= set(stored)
            assert all(stored.values()), f"{simulated.machine_id}: an event is not acked"
    finally:
        stop_selling.set()
        await asyncio.wait_for(selling, 20)
        if second is not None:
            await second.async_stop()
        if not hub.is_stopping:
            await hub.async_stop()
