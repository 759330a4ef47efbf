"""End to end: the real vend engine and journal, the simulator board, and the MDB providers
against the emulated adapter on a pty pair."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from vendhub.core.hub import Hub
from vendhub.vending.dispenser import DispenseOutcome
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal
from vendhub.vending.money import Money
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.session import VendOutcome
from vendhub_integrations.mdb.cash import MdbCashProvider
from vendhub_integrations.mdb.cashless import MdbCashlessProvider
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator
from vendhub_integrations.vending.simulator_board import SimulatorDispenser

from .conftest import wait_until

PLANOGRAM = {"A1": SlotPlan("Cola", 150, 10), "A2": SlotPlan("Water", 120, 10)}


@asynccontextmanager
async def vending_machine(
    hub: Hub, tmp_path: Path, pair: Any
) -> AsyncIterator[tuple[VendEngine, MdbAdapterEmulator, SimulatorDispenser]]:
    emulator = MdbAdapterEmulator(pair.device)
    emulator.set_tube(50, 10)
    emulator.set_tube(20, 10)
    emulator.set_tube(10, 10)
    async with emulator:
        dispenser = SimulatorDispenser(hub, "lobby_1", {"dispense_time": 0})
        providers = [
            MdbCashlessProvider(hub, "lobby_1", {"port": pair.host}),
            MdbCashProvider(hub, "lobby_1", {"port": pair.host, "poll_interval": 0.02}),
        ]
        journal = VendJournal(tmp_path / "vending.journal.db")
        engine = VendEngine(
            hub,
            MachineSetup(
                machine_id="lobby_1",
                currency="EUR",
                planogram=PLANOGRAM,
                stock={"A1": 5, "A2": 5},
                dispenser=dispenser,
                providers=providers,
                timeouts=Timeouts(payment=10, dispense=5, capture=3, void=3, multi_vend=0.5),
            ),
            journal,
        )
        await engine.async_start()
        try:
            yield engine, emulator, dispenser
        finally:
            await engine.async_stop()
            await journal.async_close()


async def test_card_vend_end_to_end(hub: Hub, tmp_path: Path, serial_pair) -> None:
    async with vending_machine(hub, tmp_path, serial_pair) as (engine, emulator, _board):
        session = await engine.async_select(slot="A1", method="card")
        final = await engine.async_wait(session.id, timeout=10)
    assert final.outcome is VendOutcome.completed
    assert final.authorization is not None and final.authorization.provider == "mdb"
    assert emulator.charged == ["1.50"]


async def test_card_vend_with_a_jam_is_reversed(hub: Hub, tmp_path: Path, serial_pair) -> None:
    async with vending_machine(hub, tmp_path, serial_pair) as (engine, emulator, board):
        board.inject("A1", DispenseOutcome.jammed)
        session = await engine.async_select(slot="A1", method="card")
        final = await engine.async_wait(session.id, timeout=10)
    assert final.outcome is VendOutcome.dispense_failed
    assert emulator.charged == []
    assert emulator.reversed == ["1.50"]


async def test_cash_vend_end_to_end_pays_change(hub: Hub, tmp_path: Path, serial_pair) -> None:
    async with vending_machine(hub, tmp_path, serial_pair) as (engine, emulator, _board):
        session = await engine.async_select(slot="A2", method="cash")
        await wait_until(lambda: emulator.changer.enabled != 0)
        emulator.insert_coin(200)
        final = await engine.async_wait(session.id, timeout=10)
        assert final.outcome is VendOutcome.completed
        assert final.authorization is not None
        assert final.authorization.credit == Money(200, "EUR")
        # The 80 cents left are held for another vend (0.5 s here), then paid out.
        await wait_until(lambda: sum(emulator.changer.paid_out) == 80)
    assert sorted(emulator.changer.paid_out, reverse=True) == [50, 20, 10]
    assert dict(emulator.changer.cash_box) == {200: 1}
