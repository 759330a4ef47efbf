"""``sales_today`` / ``revenue_today`` of a machine on the MQTT link survive a hub restart.

A real Mosquitto and the real recorder on SQLite: sales go over the broker into the ledger,
the hub stops, a new hub starts on the same folder and database, and ``machine.<id>`` counts
the local day's completed vends from the ledger plus the live ones, each event id once.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as wall_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.mosquitto import Mosquitto
from vendhub.const import EVENT_VEND_COMPLETED, EVENT_VEND_FAILED
from vendhub.core import Hub
from vendhub.core.hub import CoreConfig
from vendhub.recorder.queries import completed_vends
from vendhub.recorder.recorder import Recorder
from vendhub.registry import async_load_registries
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .broker import TestMachine, vend_data
from .conftest import (
    MachineFactory,
    adopted_machine,
    link_config,
    record,
    start_link,
    start_recorder,
    stop_hub,
    until,
)

# Kiritimati is UTC+14: local midnight is never UTC midnight, so a day taken in UTC puts the
# vends around local midnight on the wrong side.
TIME_ZONE = "Pacific/Kiritimati"
ZONE = ZoneInfo(TIME_ZONE)
MACHINE = "machine.lobby_1"
_seq = itertools.count(1)


def local_midnight() -> datetime:
    """The start of the hub's local day."""
    return datetime.combine(datetime.now(ZONE).date(), wall_time.min, tzinfo=ZONE)


async def sell(
    machine: TestMachine,
    *,
    price: int = 150,
    event_id: str | None = None,
    ts: datetime | None = None,
) -> str:
    """Publish a completed cash vend from A1 stamped now (or ``ts``); return its event id."""
    event_id = event_id or uuid.uuid4().hex
    stamp = (ts or datetime.now(UTC)).isoformat(timespec="milliseconds")
    await machine.publish(
        "event",
        {
            "v": 1,
            "id": event_id,
            "seq": next(_seq),
            "ts": stamp,
            "event": "vend_completed",
            "data": vend_data(price=price),
        },
    )
    return event_id


def figures(hub: Hub) -> tuple[int, int]:
    attributes = hub.states.get(MACHINE).attributes
    return attributes["sales_today"], attributes["revenue_today"]


Started = tuple[Hub, Recorder, MqttRuntime]


@pytest.fixture
async def hubs(
    tmp_path: Path, broker: Mosquitto, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[Started]]]:
    """Start a hub (in the local day of TIME_ZONE) with the recorder and the MQTT link on
    ``tmp_path``; ``await stop()`` it before starting the next one on the same folder."""
    running: list[tuple[Hub, Recorder]] = []

    async def start(*, link: bool = True, hold_query: asyncio.Event | None = None) -> Started:
        hub = Hub(tmp_path, CoreConfig(time_zone=TIME_ZONE))
        await async_load_registries(hub)
        recorder = await start_recorder(hub, tmp_path, commit_interval=0.1)
        running.append((hub, recorder))
        if hold_query is not None:
            query = recorder.async_query

            async def held(func: Callable[..., Any], *args: Any) -> Any:
                if getattr(func, "func", None) is completed_vends:  # the day's sales only
                    await hold_query.wait()
                return await query(func, *args)

            recorder.async_query = held  # type: ignore[method-assign]
        runtime = await start_link(hub, link_config(broker, prefix)) if link else None
        return hub, recorder, runtime  # type: ignore[return-value]

    yield start
    for hub, recorder in running:
        await stop_hub(hub)
        await recorder.async_stop()


async def restart(started: Started) -> None:
    hub, recorder, _runtime = started
    await stop_hub(hub)
    await recorder.async_stop()


async def settled(hub: Hub) -> None:
    """Wait until the hub's tasks (the reading of the day's sales among them) are done."""
    await hub.async_block_till_done(timeout=10)


async def two_sales_then_a_restart(
    hubs: Callable[..., Awaitable[Started]], machines: MachineFactory
) -> tuple[TestMachine, str, datetime]:
    """A hub records two cash sales of lobby_1 (150 stamped now, then 120) and stops; returns
    the machine, the first sale's event id and its stamp, to send it again."""
    first = await hubs()
    hub, _recorder, runtime = first
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    stamp = datetime.now(UTC)
    # Cash vends that name neither the slot's stock nor the cash box: the hub counts both.
    event_id = await sell(machine, price=150, ts=stamp)
    await machine.wait_acked(event_id)
    await machine.wait_acked(await sell(machine, price=120))
    assert figures(hub) == (2, 270)
    await restart(first)
    return machine, event_id, stamp


async def test_the_days_sales_survive_a_restart_and_a_new_sale_adds_one(
    hubs: Callable[..., Awaitable[Started]], machines: MachineFactory
) -> None:
    first = await hubs()
    hub, _recorder, runtime = first
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    for price in (150, 120):
        await machine.wait_acked(await sell(machine, price=price))  # acked once recorded
    assert figures(hub) == (2, 270)
    await restart(first)

    hub, _recorder, runtime = await hubs()
    await settled(hub)
    assert figures(hub) == (2, 270)
    assert hub.states.get(MACHINE).attributes["currency"] == "EUR"

    await until(lambda: hub.states.is_state(MACHINE, "online"))
    await machine.wait_acked(await sell(machine, price=100))
    assert figures(hub) == (3, 370)


async def test_a_sale_sent_again_after_a_restart_is_counted_once_and_changes_nothing(
    hubs: Callable[..., Awaitable[Started]], machines: MachineFactory
) -> None:
    machine, lost, stamp = await two_sales_then_a_restart(hubs, machines)

    hub, _recorder, runtime = await hubs()
    await settled(hub)
    assert figures(hub) == (2, 270)
    # Its ack was lost: the machine sends the sale again, and the new hub's link has not
    # seen its id. The ledger has it: acked as a duplicate, and not applied again.
    await until(lambda: hub.states.is_state(MACHINE, "online"))
    stock = int(hub.states.get("slot.lobby_1_a1").state)
    cash_box = hub.states.get("sensor.lobby_1_cash_box").state  # "unknown" after a restart
    vends = record(hub, EVENT_VEND_COMPLETED)
    acks = machine.acked().count(lost)
    await sell(machine, price=150, event_id=lost, ts=stamp)
    await machine.wait_acked(lost, times=acks + 1)
    assert runtime.link.stats.duplicates == 1
    assert figures(hub) == (2, 270)
    assert int(hub.states.get("slot.lobby_1_a1").state) == stock
    assert hub.states.get("sensor.lobby_1_cash_box").state == cash_box
    assert vends == []

    # The machine's next sale is new: applied, fired and counted.
    fresh = await sell(machine, price=100)
    await machine.wait_acked(fresh)
    assert [vend.data["event_id"] for vend in vends] == [fresh]
    assert int(hub.states.get("slot.lobby_1_a1").state) == stock - 1
    counted = 0 if cash_box == "unknown" else int(cash_box)
    assert hub.states.get("sensor.lobby_1_cash_box").state == str(counted + 100)
    assert figures(hub) == (3, 370)


async def test_a_sale_that_comes_while_the_ledger_is_read_is_counted_once(
    hubs: Callable[..., Awaitable[Started]], machines: MachineFactory
) -> None:
    machine, resent, stamp = await two_sales_then_a_restart(hubs, machines)

    # The new hub reads the day's sales from the ledger only once the resent sale was
    # handled (the ledger had it: not counted live) and a new one was counted live.
    gate = asyncio.Event()
    hub, _recorder, _runtime = await hubs(hold_query=gate)
    await until(lambda: hub.states.is_state(MACHINE, "online"))
    acks = machine.acked().count(resent)
    await sell(machine, price=150, event_id=resent, ts=stamp)
    await machine.wait_acked(resent, times=acks + 1)
    await machine.wait_acked(await sell(machine, price=100))
    assert figures(hub) == (1, 100)  # live only, so far
    gate.set()
    await settled(hub)
    assert figures(hub) == (3, 370)


async def test_only_the_local_days_completed_vends_of_the_machine_count(
    hubs: Callable[..., Awaitable[Started]], machines: MachineFactory
) -> None:
    midnight = local_midnight()

    def ledger_row(event_id: str, ts: datetime, price: int = 150, **changes: Any) -> dict[str, Any]:
        data = {
            "machine_id": "lobby_1",
            "slot": "A1",
            "product": "Cola",
            "price": price,
            "currency": "EUR",
            "payment_method": "card",
            "event_id": event_id,
            "vend_id": f"v-{event_id}",
            "ts": ts.isoformat(),
            "stock": 7,
        }
        data.update(changes)
        return data

    # The ledger rows go through the recorder's own money event path, stamped with their time.
    first = await hubs(link=False)
    hub, recorder, _runtime = first
    rows = [
        (EVENT_VEND_COMPLETED, ledger_row("yesterday", midnight - timedelta(minutes=30), 400)),
        (EVENT_VEND_COMPLETED, ledger_row("today", midnight + timedelta(minutes=1), 120)),
        (
            EVENT_VEND_COMPLETED,
            ledger_row("usd", midnight + timedelta(minutes=2), 999, currency="USD"),
        ),
        (EVENT_VEND_FAILED, ledger_row("failed", midnight + timedelta(minutes=3), reason="jam")),
        (
            EVENT_VEND_COMPLETED,
            ledger_row("other", midnight + timedelta(minutes=4), machine_id="gym_2"),
        ),
    ]
    for event_type, data in rows:
        waiter = asyncio.ensure_future(
            recorder.async_wait_recorded(data["machine_id"], data["event_id"], timeout=10)
        )
        await asyncio.sleep(0)
        hub.bus.async_fire(event_type, data)
        record = await waiter
        assert (record.duplicate, record.rejected) == (False, False)
    await restart(first)

    # Adopted now: its entities count what the ledger holds of its local day.
    hub, _recorder, runtime = await hubs()
    machine = await machines("lobby_1")
    await adopted_machine(hub, runtime, machine)
    await settled(hub)
    # today's EUR vend, and the USD one as a sale without revenue
    assert figures(hub) == (2, 120)
