"""Sales over MQTT into the real recorder: acked only after the commit, exactly once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.mosquitto import Mosquitto
from tests.sqlite_lock import locked_sqlite
from vendhub.const import EVENT_MONEY_RECORDED, EVENT_VEND_COMPLETED
from vendhub.core import Event, Hub
from vendhub.recorder import engine as recorder_engine
from vendhub.recorder.models import CashCollection, StockMovement, VendTransaction
from vendhub.recorder.recorder import Recorder
from vendhub_integrations.mqtt import runtime as runtime_module
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .broker import TestMachine, vend_data
from .conftest import (
    MachineFactory,
    adopted_machine,
    link_config,
    record,
    start_link,
    start_recorder,
    until,
)


def count(recorder: Recorder, model: Any, *where: Any) -> int:
    with recorder.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(model).where(*where)).scalar()
        )


def track_acks(machine: TestMachine, hub: Hub) -> list[tuple[str, str]]:
    """('recorded', id) from the hub's bus and ('acked', id) from the machine, in order."""
    timeline: list[tuple[str, str]] = []

    def recorded(event: Event) -> None:
        timeline.append(("recorded", event.data["event_id"]))

    hub.bus.async_listen(EVENT_MONEY_RECORDED, recorded)
    seen = 0

    async def watch() -> None:
        nonlocal seen
        while True:
            acked = machine.acked()
            timeline.extend(("acked", event_id) for event_id in acked[seen:])
            seen = len(acked)
            await asyncio.sleep(0.002)

    task = asyncio.get_running_loop().create_task(watch())
    hub.bus.async_listen_once("hub_stop", lambda _event: task.cancel())
    return timeline


async def recorded_machine(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    tmp_path: Path,
    **recorder_options: Any,
) -> tuple[Recorder, MqttRuntime, TestMachine]:
    """A recorder committing every 0.1 s, the link, and machine lobby_1 adopted."""
    recorder = await start_recorder(hub, tmp_path, commit_interval=0.1, **recorder_options)
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    return recorder, runtime, machine


async def test_a_sale_is_acked_only_after_the_recorder_committed_it(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory, tmp_path: Path
) -> None:
    recorder, runtime, machine = await recorded_machine(hub, broker, prefix, machines, tmp_path)
    vends = record(hub, EVENT_VEND_COMPLETED)
    timeline = track_acks(machine, hub)

    # Another process holds the database: nothing can be committed until it lets go.
    with locked_sqlite(tmp_path / "vendhub.db"):
        vend_id = "b" * 32
        started = await machine.event("vend_started", vend_data(vend_id))
        completed = await machine.event("vend_completed", vend_data(vend_id, stock=7, cash_box=150))
        # vend_started is no ledger event: acked once processed
        await machine.wait_acked(started)
        await until(lambda: vends)
        assert vends[0].data["event_id"] == completed
        assert hub.states.is_state("slot.lobby_1_a1", "7")
        await asyncio.sleep(0.5)
        assert runtime.acks.is_waiting("lobby_1", completed)
        assert completed not in machine.acked()
        assert ("recorded", completed) not in timeline

    await machine.wait_acked(completed, timeout=10)
    await until(lambda: ("acked", completed) in timeline)
    assert timeline.index(("recorded", completed)) < timeline.index(("acked", completed))
    assert not runtime.acks.is_waiting("lobby_1", completed)
    assert count(recorder, VendTransaction, VendTransaction.source_event_id == completed) == 1
    with recorder.engine.connect() as connection:
        row = connection.execute(
            select(
                VendTransaction.machine_id, VendTransaction.slot_code, VendTransaction.vend_id
            ).where(VendTransaction.source_event_id == completed)
        ).one()
    assert tuple(row) == ("lobby_1", "A1", vend_id)


async def test_the_same_sale_three_times_is_one_transaction_and_three_acks(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory, tmp_path: Path
) -> None:
    recorder, runtime, machine = await recorded_machine(hub, broker, prefix, machines, tmp_path)
    vends = record(hub, EVENT_VEND_COMPLETED)

    data = vend_data(stock=7)
    event_id = "c" * 32
    for copy in range(1, 4):  # the machine resends until it sees an ack
        await machine.event("vend_completed", data, event_id=event_id)
        await machine.wait_acked(event_id, times=copy)
    assert machine.acked() == [event_id] * 3
    assert len(vends) == 1
    assert runtime.link.stats.duplicates == 2
    await recorder.async_flush()
    assert count(recorder, VendTransaction, VendTransaction.source_event_id == event_id) == 1
    assert hub.states.get("machine.lobby_1").attributes["sales_today"] == 1

    # three copies in one burst, before the first one is committed: all acked after it
    burst = "d" * 32
    recorded = record(hub, EVENT_MONEY_RECORDED)
    for _ in range(3):
        await machine.event("vend_completed", data, event_id=burst)
    await machine.wait_acked(burst)
    assert [event.data["event_id"] for event in recorded] == [burst]
    await recorder.async_flush()
    assert count(recorder, VendTransaction, VendTransaction.source_event_id == burst) == 1


async def test_restock_and_cash_collection_are_ledger_events_too(
    hub: Hub, broker: Mosquitto, prefix: str, machines: MachineFactory, tmp_path: Path
) -> None:
    recorder, _runtime, machine = await recorded_machine(hub, broker, prefix, machines, tmp_path)
    recorded = record(hub, EVENT_MONEY_RECORDED)

    restocked = await machine.event("restocked", {"slots": {"A1": 10, "A2": 8}})
    collected = await machine.event("cash_collected", {"amount": 450, "cash_box": 0})
    await machine.wait_acked(restocked)
    await machine.wait_acked(collected)
    assert {event.data["event_type"] for event in recorded} == {
        "stock_refilled",
        "cash_collected",
    }
    assert hub.states.is_state("slot.lobby_1_a1", "10")
    assert hub.states.is_state("sensor.lobby_1_cash_box", "0")
    assert count(recorder, StockMovement, StockMovement.source_event_id == restocked) == 2
    with recorder.engine.connect() as connection:
        amount = connection.execute(
            select(CashCollection.amount).where(CashCollection.source_event_id == collected)
        ).scalar_one()
    assert amount == 450


async def test_without_a_recorder_sales_are_acked_once_processed_and_it_says_so(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="vendhub_integrations.mqtt"):
        runtime = await start_link(hub, link_config(broker, prefix))
    warnings = [r.getMessage() for r in caplog.records if "No recorder" in r.getMessage()]
    assert len(warnings) == 1
    assert "NOT recorded" in warnings[0]
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    sale = await machine.event("vend_completed", vend_data())
    await machine.wait_acked(sale)
    assert runtime.acks.waiting == 0


async def test_a_sale_whose_ack_wait_expired_is_acked_only_once_recorded(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "ACK_WAIT_TIMEOUT", 0.5)
    recorder, runtime, machine = await recorded_machine(hub, broker, prefix, machines, tmp_path)
    recorded = record(hub, EVENT_MONEY_RECORDED)

    with locked_sqlite(tmp_path / "vendhub.db"):
        data = vend_data(stock=7)
        sale = await machine.event("vend_completed", data)
        await until(lambda: runtime.acks.stats.expired == 1, timeout=10)
        # The machine sends it again: a copy of a sale not in the database is not acked.
        await machine.event("vend_completed", data, event_id=sale)
        await until(lambda: runtime.link.stats.duplicates == 1)
        await asyncio.sleep(0.5)
        assert sale not in machine.acked()
        assert runtime.acks.stats.rerecorded == 1
        assert runtime.acks.is_waiting("lobby_1", sale)

    await machine.wait_acked(sale, timeout=10)
    await recorder.async_flush()
    assert count(recorder, VendTransaction, VendTransaction.source_event_id == sale) == 1
    # The first copy, then the copy handed over again, found in the ledger.
    assert [event.data["duplicate"] for event in recorded] == [False, True]
    assert machine.acked().count(sale) == 1
    assert hub.states.get("machine.lobby_1").attributes["sales_today"] == 1


async def test_a_sale_the_recorder_lost_after_the_wait_expired_is_written_from_the_copy(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "ACK_WAIT_TIMEOUT", 0.5)
    # The database locked is the database away once a write has waited this long.
    monkeypatch.setattr(recorder_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    # Room in memory for one money event while the database is away.
    recorder, runtime, machine = await recorded_machine(
        hub, broker, prefix, machines, tmp_path, max_backlog=1, retry_first_delay=0.1
    )

    with locked_sqlite(tmp_path / "vendhub.db"):
        first_data, second_data = vend_data(stock=7), vend_data(stock=6)
        first = await machine.event("vend_completed", first_data)
        second = await machine.event("vend_completed", second_data)
        await until(lambda: recorder.stats.money_dropped == 1, timeout=10)  # the first
        await until(lambda: runtime.acks.stats.expired == 2, timeout=10)
        await machine.event("vend_completed", first_data, event_id=first)
        await until(lambda: runtime.acks.stats.rerecorded == 1)
        await until(lambda: recorder.stats.money_dropped == 2, timeout=10)  # now the second
        await asyncio.sleep(0.3)
        assert machine.acked() == []

    await machine.wait_acked(first, timeout=10)
    await asyncio.sleep(0.5)
    assert second not in machine.acked()  # lost from memory, kept by the machine
    await machine.event("vend_completed", second_data, event_id=second)
    await machine.wait_acked(second, timeout=10)
    await recorder.async_flush()
    for sale in (first, second):
        assert count(recorder, VendTransaction, VendTransaction.source_event_id == sale) == 1
    assert runtime.acks.stats.rerecorded == 2


async def test_a_sale_recorded_after_its_wait_expired_is_acked_then(
    hub: Hub,
    broker: Mosquitto,
    prefix: str,
    machines: MachineFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "ACK_WAIT_TIMEOUT", 0.5)
    recorder, runtime, machine = await recorded_machine(hub, broker, prefix, machines, tmp_path)

    with locked_sqlite(tmp_path / "vendhub.db"):
        sale = await machine.event("vend_completed", vend_data(stock=7))
        await until(lambda: runtime.acks.stats.expired == 1, timeout=10)
        assert not runtime.acks.is_waiting("lobby_1", sale)

    await machine.wait_acked(sale, timeout=10)  # no copy needed
    assert runtime.acks.stats.rerecorded == 0
    await recorder.async_flush()
    assert count(recorder, VendTransaction, VendTransaction.source_event_id == sale) == 1
